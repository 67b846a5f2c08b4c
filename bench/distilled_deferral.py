"""Would a distilled copy of the second opinion on the fast path tell which messages to send it?

Reads, for the dev and test splits of one data set, the gold labels, the fast model's and the
distilled model's `triage classify` records and the second opinion's `triage slm label` rows
(with probabilities), and prints the cascade's accuracy with a share of the messages sent to the
second opinion, routed by

- max-probability: the fast model's least confident first (what `--no-deferral` calibrates);
- learned deferral on the fast model's features (top probability, top-2 margin, entropy, label),
  a logistic model fitted on dev, as `triage calibrate` fits its own (target: the second opinion
  fixes the fast label);
- disagreement first: where the distilled model's label differs from the fast one, then the
  least confident;
- the distilled model's probability of the fast label, lowest first;
- learned deferral on the fast features plus the distilled ones (its probability of the fast
  label, its top probability, disagreement, L1 distance, KL divergence);
- the oracle (the messages the second opinion fixes first): the bound no score can pass.

Each with the routed message's label taken from the average of both models' probabilities
(`combine = "average"`) and from the second opinion alone (`replace`). Learned scores are fitted on
dev and scored on test (dev's own figure from two folds). `bench/distilled_deferral.sh` makes the
files.

    python bench/distilled_deferral.py DIR [SHARE]
"""

import json
import sys

import numpy as np


def probs(path, labels):
    return np.array(
        [[json.loads(line)["probabilities"][k] for k in labels] for line in open(path)]
    )


def load(d, split):
    gold = [json.loads(line)["label"] for line in open(f"{d}/{split}.jsonl")]
    labels = sorted(set(gold))
    g = np.array([labels.index(x) for x in gold])
    f = probs(f"{d}/{split}.fast.jsonl", labels)
    dist = probs(f"{d}/{split}.distilled.jsonl", labels)
    s = probs(f"{d}/{split}.slm.jsonl", labels)
    assert len(g) == len(f) == len(dist) == len(s), split
    return g, f, dist, s


def features(f, dist, with_distilled):
    eps = 1e-9
    n, k = f.shape
    sf = np.sort(f, 1)
    fl = f.argmax(1)
    cols = [sf[:, -1], sf[:, -1] - sf[:, -2], -(f * np.log(f + eps)).sum(1)]
    cols += [(fl == j).astype(float) for j in range(k)]
    if with_distilled:
        cols += [
            dist[np.arange(n), fl],
            dist.max(1),
            (dist.argmax(1) != fl).astype(float),
            np.abs(f - dist).sum(1),
            (f * np.log((f + eps) / (dist + eps))).sum(1),
        ]
    return np.column_stack(cols)


def fit(x, y, l2=1e-2, steps=3000):
    """L2-regularised logistic regression by gradient descent on standardised features."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.column_stack([(x - mu) / sd, np.ones(len(x))])
    w = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        w -= 0.5 * (z.T @ (p - y) / len(y) + l2 * w)
    return lambda x2: np.column_stack([(x2 - mu) / sd, np.ones(len(x2))]) @ w


def combined(f, s, comb):
    return ((f + s) / 2).argmax(1) if comb == "average" else s.argmax(1)


def cascade(g, f, s, score, share, comb):
    sent = np.argsort(-score, kind="stable")[: int(share * len(g))]
    label = f.argmax(1)
    label[sent] = combined(f[sent], s[sent], comb)
    return (label == g).mean()


def main(d, share):
    dev, test = load(d, "dev"), load(d, "test")
    for name, (g, f, dist, s) in (("dev", dev), ("test", test)):
        agree = (dist.argmax(1) == f.argmax(1)).mean()
        print(
            f"{name}: fast {100 * (f.argmax(1) == g).mean():.2f}%, distilled "
            f"{100 * (dist.argmax(1) == g).mean():.2f}%, second opinion "
            f"{100 * (s.argmax(1) == g).mean():.2f}%; distilled disagrees with fast on "
            f"{100 * (1 - agree):.1f}%"
        )
    print(f"\ncascade accuracy with {100 * share:.0f}% sent (dev | test)")
    for comb in ("average", "replace"):
        rows = {}
        for name, (g, f, dist, s) in (("dev", dev), ("test", test)):
            fl = f.argmax(1)
            n = len(g)
            fixes = (combined(f, s, comb) == g).astype(float) - (fl == g)
            tie = np.random.default_rng(0).random(n) * 1e-6
            for key, score in (
                ("max-probability", -f.max(1)),
                ("disagreement first", (dist.argmax(1) != fl) * 10.0 - f.max(1)),
                ("distilled p(fast label), lowest first", -dist[np.arange(n), fl]),
                ("oracle", fixes + tie),
            ):
                rows.setdefault(key, {})[name] = cascade(g, f, s, score, share, comb)
        for key, with_distilled in (
            ("learned, fast features", False),
            ("learned, fast + distilled features", True),
        ):
            (gd, fd, dd, sd), (gt, ft, dt, st) = dev, test
            target = lambda g, f, s: ((combined(f, s, comb) == g) & (f.argmax(1) != g)).astype(float)
            xd, xt = features(fd, dd, with_distilled), features(ft, dt, with_distilled)
            half = np.arange(len(gd)) < len(gd) // 2
            a = fit(xd[half], target(gd[half], fd[half], sd[half]))
            b = fit(xd[~half], target(gd[~half], fd[~half], sd[~half]))
            rows[key] = {
                "dev": cascade(gd, fd, sd, np.where(half, b(xd), a(xd)), share, comb),
                "test": cascade(gt, ft, st, fit(xd, target(gd, fd, sd))(xt), share, comb),
            }
        print(f"  combine = {comb}")
        for key, r in rows.items():
            print(f"    {key:40} {100 * r['dev']:6.2f}% | {100 * r['test']:6.2f}%")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.15)

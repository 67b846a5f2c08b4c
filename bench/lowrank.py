"""What a low-rank output costs in accuracy: rewrites a triage model file with its weight matrix
W (features x labels) replaced by its best rank-r approximation (truncated SVD, the optimum in
the Frobenius norm), for `triage eval` to score. Only an upper bound on what rank r keeps
that costs no training; a factorised model trained end to end (as fastText) could do better.

    python bench/lowrank.py MODEL RANK OUT
"""

import hashlib
import json
import sys

import numpy as np


def main(src, rank, dst):
    raw = open(src, "rb").read()
    magic, _checksum, header, body = raw.split(b"\n", 3)
    h = json.loads(header)
    k = len(h["labels"])
    n = sum(h["n_features"])
    buckets = body[: 4 * n]
    idf = np.frombuffer(body, "<f4", n, 4 * n)
    w = np.frombuffer(body, "<f4", n * k, 8 * n).reshape(n, k).astype(np.float64)
    intercept = body[8 * n + 4 * n * k :]
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    kept = (s[:rank] ** 2).sum() / (s**2).sum()
    approx = (u[:, :rank] * s[:rank]) @ vt[:rank]
    new_body = buckets + idf.tobytes() + approx.astype("<f4").tobytes() + intercept
    assert len(new_body) == len(body)
    digest = hashlib.sha256(header + b"\n" + new_body).hexdigest()
    with open(dst, "wb") as f:
        f.write(magic + b"\nsha256 " + digest.encode() + b"\n" + header + b"\n" + new_body)
    print(f"rank {rank} of {k}: {kept:.4f} of the squared Frobenius norm kept")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])

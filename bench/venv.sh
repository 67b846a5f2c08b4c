# Sourced by the bench scripts: sets VENV to the Python peers' venv,
# ${TRIAGE_CACHE:-.cache/triage}/bench-venv, created or refreshed while bench/requirements.txt
# changed (PYTHON picks the interpreter, default python3.11 or python3).
VENV="${TRIAGE_CACHE:-.cache/triage}/bench-venv"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp="$VENV/.requirements.sha256"
want="$(sha256sum bench/requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "bench: installing bench/requirements.txt into $VENV" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
    echo "$want" > "$stamp"
fi

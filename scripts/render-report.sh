#!/usr/bin/env bash
# Renders an evaluation report (`triage eval --report DIR`) in headless Chromium to a PNG.
#
#   scripts/render-report.sh DIR OUT.png
#
# Exits non-zero when Chromium is missing or fails, or when the PNG is missing or empty.
# CHROMIUM overrides the browser command (default: chromium); RENDER_WINDOW the window size
# (default: 1200,2400; only the window is captured, so a taller one shows more of the page).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 DIR OUT.png" >&2
    exit 2
fi
dir=$1
out=$2
html="$dir/report.html"
if [[ ! -s $html ]]; then
    echo "render-report: $html is missing or empty" >&2
    exit 2
fi
browser=${CHROMIUM:-chromium}
if ! command -v "$browser" >/dev/null 2>&1; then
    echo "render-report: $browser not found; install Chromium (Debian: apt-get install chromium)" >&2
    exit 127
fi

html_abs="$(cd "$(dirname "$html")" && pwd)/$(basename "$html")"
mkdir -p "$(dirname "$out")"
out_abs="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
rm -f "$out_abs"

status=0
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
    --user-data-dir="$profile" --screenshot="$out_abs" \
    --window-size="${RENDER_WINDOW:-1200,2400}" "file://$html_abs" >"$log" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
    echo "render-report: $browser failed (exit $status):" >&2
    tail -n 30 "$log" >&2
    exit 1
fi
if [[ ! -s $out_abs ]]; then
    echo "render-report: $browser wrote no screenshot to $out_abs:" >&2
    tail -n 30 "$log" >&2
    exit 1
fi
echo "rendered $html_abs -> $out_abs ($(wc -c <"$out_abs") bytes)"

#!/usr/bin/env bash
# Builds the seed corpora under fuzz/corpus/ (kept out of git) from files of the repository:
# sample messages, example configurations, the shipped default model, and a tiny model trained
# here with the release `triage` binary. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
C="$ROOT/fuzz/corpus"
TRIAGE="${TRIAGE_BIN:-$ROOT/target/release/triage}"
[ -x "$TRIAGE" ] || cargo build --release -p triage
mkdir -p "$C"/{decode,analyze,model_file,model_body,config}

# decode and analyze: each sample message, as a payload and as bare text.
i=0
while IFS= read -r line; do
  i=$((i + 1))
  printf '%s' "$line" >"$C/decode/msg-$i"
  python3 -c 'import json,sys
try: print(json.loads(sys.argv[1]).get("text",""), end="")
except Exception: print(sys.argv[1], end="")' "$line" >"$C/analyze/msg-$i"
done <examples/messages.jsonl
printf '%s' '{"id":7,"text":"naïve café 🙂 https://x.org @bob :-) ΣΑΣ İstanbul 東京","extra":{"a":[1,2.5,null]}}' >"$C/decode/unicode"
printf '%s' 'ＦＵＬＬ　ｗｉｄｔｈ ﬁne Ⅻ e\u0301 ὒ ß ΑΣ !!! ??? <3 xD www.example.org' >"$C/analyze/unicode"

# config: the example service configuration and the training configurations.
cp examples/triage.toml "$C/config/triage.toml"
for f in configs/*.toml; do cp "$f" "$C/config/train-$(basename "$f")"; done

# A tiny real model: 3 labels, 2^10 buckets per block (a few KB).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/train.jsonl" <<'EOF'
{"text":"my card was charged twice","label":"billing"}
{"text":"refund the double charge please","label":"billing"}
{"text":"the app crashes when I log in","label":"bug"}
{"text":"login screen crashes again","label":"bug"}
{"text":"how do I change my email","label":"account"}
{"text":"change the email on my account","label":"account"}
EOF
printf '[analyzer]\nhash_bits = 10\nchar_ngrams = [2, 3]\n[tfidf]\nmin_df = 1\n' >"$tmp/train.toml"
"$TRIAGE" train --data "$tmp/train.jsonl" --out "$tmp/tiny.triage" --config "$tmp/train.toml" >/dev/null 2>&1

# model_file: the real files, and the first 4 KB of the default model (the checksum guards the
# rest, so mutations mostly exercise the first three lines; run with -max_len to keep it fast).
cp "$tmp/tiny.triage" "$C/model_file/tiny.triage"
cp models/default/sentiment4.triage "$C/model_file/sentiment4.triage"
head -c 4096 models/default/sentiment4.triage >"$C/model_file/sentiment4-4k"
head -c 200 "$tmp/tiny.triage" >"$C/model_file/tiny-200"

# model_body: "<header JSON>\n<body>" (the magic and checksum lines stripped: the target adds a
# correct checksum). The tiny model whole; the default model's header with the start of its body.
tail -n +3 "$tmp/tiny.triage" >"$C/model_body/tiny"
python3 -c 'import sys; d = open(sys.argv[1], "rb").read().split(b"\n", 2)[2]; sys.stdout.buffer.write(d[:8192])' \
  models/default/sentiment4.triage >"$C/model_body/sentiment4-8k"
# Regression seed: the tiny model with every IDF at 3e38 behind a valid checksum (it loaded and
# predicted NaN before the load-time bounds in classifier/src/model.rs).
python3 - "$C/model_body/tiny" "$C/model_body/regression-extreme-idf" <<'PY'
import json, struct, sys
header, body = open(sys.argv[1], "rb").read().split(b"\n", 1)
n = sum(json.loads(header)["n_features"])
body = bytearray(body)
body[4 * n : 8 * n] = struct.pack("<f", 3e38) * n
open(sys.argv[2], "wb").write(header + b"\n" + bytes(body))
PY
for d in "$C"/*; do echo "$(basename "$d"): $(ls "$d" | wc -l) seeds"; done

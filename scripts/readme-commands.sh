#!/usr/bin/env bash
# Runs the commands the README shows (its "Use" section, with the bundled samples for
# <FOLDER>) as a new user would type them, and fails on the first that fails. CI runs it
# after the tests (.ci/run); it needs a release build and the model (scripts/fetch-models.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
pp=./target/release/pinpoint
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
idx="$tmp/index"
step() { echo "+ $*" >&2; "$@" >/dev/null; }

step $pp index samples --index "$idx"
step $pp index samples --index "$idx"                       # incremental: nothing to do
step $pp index samples --index "$idx" --rebuild             # what every corrupt-index error names
step $pp query "how do tides work" --index "$idx"
step $pp query "how do tides work" --index "$idx" -k 3 --mode dense --json --explain
step $pp query "how do tides work" --index "$idx" -k 50 --no-cutoff --max-tokens 2000 --mode lexical
step $pp query "how do tides work" --index "$idx" --no-rerank --boost '*.md=2' --recency-days 30
step $pp query "how do tides work" --index "$idx" --reranker sentence --rerank-depth 10 --depth 50
step $pp query "how do tides work" --index "$idx" --expansion 0 --no-abstain
step $pp stats --index "$idx"
step $pp index samples --index "$tmp/distinct" --token-units distinct   # fewer token codes
step $pp stats --index "$tmp/distinct"
step $pp verify --index "$idx"
step $pp compact --index "$idx"
# Collections, filters and routing (the "Collections and filters" section), precision and
# progress of `index`, and the shards of one folder.
coll="$tmp/collections"
step $pp index samples --index "$coll" --collection notes --description "the bundled samples" --progress json
step $pp stats --index "$coll"
step $pp query "how do tides work" --index "$coll" --collection notes
step $pp query "how do tides work" --index "$coll" --where "ext IN (md,txt) AND modified >= 2000-01-01 AND NOT path:drafts/**"
step $pp query "how do tides work" --index "$coll" --route auto --json
step $pp forget notes --index "$coll"
step $pp index samples --index "$tmp/f32" --precision f32 --progress none
step $pp query "how do tides work" --index "$idx" --index "$tmp/f32"
# Limits are refused with exit 1, not attempted.
if $pp query "tides" --index "$idx" -k 100000000000 2>/dev/null; then
  echo "query -k 100000000000 was not refused" >&2; exit 1
fi
# Your own labelled questions.
printf '{"query": "how do tides work", "relevant": ["tides.txt"]}\n' > "$tmp/labels.jsonl"
step $pp eval --queries "$tmp/labels.jsonl" --index "$idx"
# serve, and the two curl forms the README shows.
port=$((20000 + RANDOM % 20000))
$pp serve --index "$idx" --addr "127.0.0.1:$port" --quiet &
for _ in $(seq 1 100); do curl -s "localhost:$port/health" >/dev/null && break; sleep 0.1; done
step curl -sf --json '{"query": "how do tides work", "k": 3}' "localhost:$port/query"
step curl -sf "localhost:$port/query?q=how+do+tides+work&k=3&explain"
code=$(curl -s -o /dev/null -w '%{http_code}' --json '{"query": "x", "k": 100000000000}' "localhost:$port/query")
[ "$code" = 400 ] || { echo "oversized k got $code" >&2; exit 1; }
echo "README commands: all ran" >&2

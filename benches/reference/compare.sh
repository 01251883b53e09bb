#!/usr/bin/env bash
# Runs pinpoint bench and the Python reference on the same workloads, in one go, and prints
# ratios (pinpoint / reference). Absolute numbers are noisy on these machines; ratios from
# one run are the result. Usage: benches/reference/compare.sh [DOCS] [DENSE_VECTORS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
docs="${1:-300}"
nvec="${2:-100000}"
./benches/reference/setup.sh
cargo build --release --quiet
tmp=$(mktemp -d)
./target/release/pinpoint bench --docs "$docs" --dense-vectors "$nvec" --export-vectors "$tmp/vectors.f32" --json > "$tmp/pinpoint.json"
./benches/reference/.venv/bin/python benches/reference/run.py --docs "$docs" --vectors "$tmp/vectors.f32" --json > "$tmp/reference.json"
python3 - "$tmp/pinpoint.json" "$tmp/reference.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
def row(name, a, b, unit):
    print(f"{name:<34} {a:>12.2f} {b:>12.2f} {unit:<10} {a / b if b else float('nan'):>7.2f}x")
print(f"{'workload':<34} {'pinpoint':>12} {'reference':>12} {'unit':<10} {'ratio':>8}")
row("embedding", p["embed"]["texts_per_s"], r["embed"]["texts_per_s"], "texts/s")
row("embedding", p["embed"]["tokens_per_s"], r["embed"]["tokens_per_s"], "tokens/s")
print(f"  (the index's encoder: {p['embed']['path']}; every path this CPU runs:)")
for e in p.get("encoder_paths", []):
    row(f"  {e['path']}", e["tokens_per_s"], r["embed"]["tokens_per_s"], "tokens/s")
row("query embedding p50 (lower=better)", p["query"]["embed"]["p50_ms"], r["query_embed"]["p50_ms"], "ms")
row("lexical (single thread)", p["lexical"]["qps"], r["lexical"]["qps"], "q/s")
row("dense exact scan", p["dense"]["exact_qps"], r["dense"]["exact_qps"], "q/s")
for a, b in zip(p["dense"]["curve"], r["dense"]["curve"]):
    row(f"hnsw ef={a['ef']} (recall {a['recall@10']:.3f} vs {b['recall@10']:.3f})", a["qps"], b["qps"], "q/s")
print(f"warm default query p50 {p['query']['total']['p50_ms']:.2f} ms, cold CLI query {p['cold_query_s']:.3f} s, "
      f"index build {p['index']['seconds']:.1f} s with {p['index']['forward_share']*100:.0f}% embedding")
PY

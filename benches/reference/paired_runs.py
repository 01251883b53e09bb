#!/usr/bin/env python3
"""Paired randomisation test of nDCG@10 between two TREC run files on one qrels file.

Why: `pinpoint eval` pairs the modes of one run; comparing one mode across two runs (an
index's settings before and after `tune`, or two granularities) needs the runs it writes
with `--runs`. Same statistic as `src/eval/stats.rs`: 10,000 seeded sign flips, two-sided
p = (count + 1) / (R + 1).

Usage: paired_runs.py QRELS A.trec B.trec    (prints mean A, mean B, B - A, p)
Standard library only.
"""
import math
import random
import sys


def qrels(path):
    rel = {}
    for line in open(path):
        parts = line.strip().split("\t")
        if len(parts) < 3 or parts[0] == "query-id":
            continue
        if float(parts[2]) > 0:
            rel.setdefault(parts[0], {})[parts[1]] = float(parts[2])
    return rel


def run(path):
    out = {}
    for line in open(path):
        q, _, doc, rank, _score, _tag = line.split()
        out.setdefault(q, []).append((int(rank), doc.replace("%20", " ").replace("%25", "%")))
    return {q: [d for _, d in sorted(v)] for q, v in out.items()}


def ndcg10(ranked, rels):
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(rels.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def main():
    rel, a, b = qrels(sys.argv[1]), run(sys.argv[2]), run(sys.argv[3])
    qs = sorted(rel)
    xa = [ndcg10(a.get(q, []), rel[q]) for q in qs]
    xb = [ndcg10(b.get(q, []), rel[q]) for q in qs]
    d = [y - x for x, y in zip(xa, xb)]
    obs = abs(sum(d))
    rng = random.Random(7)
    r = 10000
    count = sum(1 for _ in range(r) if abs(sum(x if rng.random() < 0.5 else -x for x in d)) >= obs)
    n = len(qs)
    print(f"queries {n}  A {sum(xa)/n:.4f}  B {sum(xb)/n:.4f}  B-A {sum(d)/n:+.4f}  "
          f"p {(count + 1) / (r + 1):.4f}  better/worse {sum(x > 0 for x in d)}/{sum(x < 0 for x in d)}")


if __name__ == "__main__":
    main()

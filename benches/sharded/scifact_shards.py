#!/usr/bin/env python3
"""SciFact as 4 shards against one index (the distributed issue's quality check).

Builds, with the Python package, one index of the BEIR folder's corpus and N shard indexes
(each document in the shard `pinpoint.shard_of(id, N)` names), then asks every judged query
of the split both ways (k=10 passages, no cut-off, no abstention; the shards' answers fused
by the engine's rule) and prints nDCG@10 and recall@10 of each with the paired
randomisation test of the difference (10,000 sign flips, seeded).

Usage: scifact_shards.py BEIR_DIR WORK [--shards 4] [--split test] [--model DIR]
"""
import argparse
import json
import math
import os
import random
import time

import pinpoint


def load(beir, split):
    corpus = [json.loads(l) for l in open(os.path.join(beir, "corpus.jsonl"))]
    queries = {}
    for l in open(os.path.join(beir, "queries.jsonl")):
        q = json.loads(l)
        queries[str(q["_id"])] = q["text"]
    rels = {}
    for line in open(os.path.join(beir, "qrels", f"{split}.tsv")):
        p = line.strip().split("\t")
        if len(p) < 3 or p[0] == "query-id" or float(p[2]) <= 0:
            continue
        rels.setdefault(p[0], {})[p[1]] = float(p[2])
    return corpus, queries, rels


def ndcg(ranked, rel, k=10):
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(rel.values(), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def paired(a, b, rounds=10000):
    rng = random.Random(7)
    d = [y - x for x, y in zip(a, b)]
    obs = abs(sum(d))
    hits = sum(1 for _ in range(rounds) if abs(sum(x if rng.random() < 0.5 else -x for x in d)) >= obs - 1e-12)
    return (hits + 1) / (rounds + 1)


def build(path, docs, model, shard=None):
    if os.path.exists(os.path.join(path, "manifest.json")):
        return pinpoint.Index(path, model=model, read_only=True)
    idx = pinpoint.Index(path, model=model)
    for d in docs:
        text = d.get("text") or d.get("title") or ""
        idx.add_document(str(d["_id"]), d.get("title", ""), text)
    idx.commit()
    return pinpoint.Index(path, model=model, read_only=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("beir")
    p.add_argument("work")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--split", default="test")
    p.add_argument("--model", default="models/all-MiniLM-L6-v2")
    a = p.parse_args()
    corpus, queries, rels = load(a.beir, a.split)
    t = time.time()
    single = build(os.path.join(a.work, "single"), corpus, a.model)
    t_single = time.time() - t
    parts = [[] for _ in range(a.shards)]
    for d in corpus:
        parts[pinpoint.shard_of(str(d["_id"]), a.shards)].append(d)
    t = time.time()
    shards = [build(os.path.join(a.work, f"shard-{i}"), parts[i], a.model) for i in range(a.shards)]
    t_shards = time.time() - t
    held = [s.stats()["documents"] for s in shards]
    assert sum(held) == len(corpus) == single.stats()["documents"], (held, len(corpus))
    opts = dict(k=10, no_cutoff=True, no_abstain=True)
    rows = []
    for qid, rel in rels.items():
        q = queries[qid]
        docs = lambda hits: list(dict.fromkeys(h["path"] for h in hits))
        one = docs(single.search(q, **opts)["hits"])
        many = docs(pinpoint.search_many(shards, q, **opts)["hits"])
        rows.append((ndcg(one, rel), ndcg(many, rel),
                     len(set(one) & set(rel)) / len(rel), len(set(many) & set(rel)) / len(rel)))
    n = len(rows)
    mean = lambda i: sum(r[i] for r in rows) / n
    print(f"documents {len(corpus)}: shards hold {held} (sum {sum(held)}, each document in exactly one)")
    print(f"build (embedding included, one process): single {t_single:.0f} s, {a.shards} shards {t_shards:.0f} s (0 = cached)")
    print(f"| index | queries | nDCG@10 | recall@10 |")
    print(f"| --- | --- | --- | --- |")
    print(f"| single | {n} | {mean(0):.4f} | {mean(2):.4f} |")
    print(f"| {a.shards} shards, fused | {n} | {mean(1):.4f} (Δ {mean(1) - mean(0):+.4f}, p {paired([r[0] for r in rows], [r[1] for r in rows]):.3f}) "
          f"| {mean(3):.4f} (Δ {mean(3) - mean(2):+.4f}, p {paired([r[2] for r in rows], [r[3] for r in rows]):.3f}) |")


if __name__ == "__main__":
    main()

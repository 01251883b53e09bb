#!/usr/bin/env python3
"""The Python reference stack on the same workloads as `pinpoint bench`.

Same model folder, same texts (first N documents of the BEIR corpus, title + text, max 256
tokens), same queries, same dense vectors (exported by `pinpoint bench --export-vectors`).
Threads: torch uses 2 (the machine's cores), BM25 and HNSW queries run single-threaded,
as pinpoint's are measured.
"""
import argparse, json, os, sys, time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np


def load_beir(d, n_docs):
    docs = []
    with open(os.path.join(d, "corpus.jsonl")) as f:
        for line in f:
            if len(docs) >= n_docs:
                break
            o = json.loads(line)
            docs.append((str(o["_id"]), o.get("title", ""), o.get("text", "")))
    corpus_all = []
    with open(os.path.join(d, "corpus.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            corpus_all.append(o.get("title", "") + " " + o.get("text", ""))
    qids = []
    with open(os.path.join(d, "qrels", "test.tsv")) as f:
        next(f)
        for line in f:
            q = line.split("\t")[0].strip()
            if q not in qids:
                qids.append(q)
    qtext = {}
    with open(os.path.join(d, "queries.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            qtext[str(o["_id"])] = o["text"]
    queries = [qtext[q] for q in qids if q in qtext]
    return docs, corpus_all, queries


def pct(xs, q):
    xs = sorted(xs)
    return xs[int(round((len(xs) - 1) * q))] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beir", default="tests/data/scifact-subset")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--vectors", help="raw f32 vectors from pinpoint bench --export-vectors")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = {}
    docs, corpus_all, queries = load_beir(a.beir, a.docs)

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    m = SentenceTransformer(a.model, device="cpu")
    m.max_seq_length = 256
    texts = [t + " " + x for _, t, x in docs]
    m.encode(texts[:16], batch_size=16)
    toks = sum(min(len(m.tokenizer(t, truncation=False)["input_ids"]), 256) for t in texts)
    t0 = time.perf_counter()
    m.encode(texts, batch_size=32)
    s = time.perf_counter() - t0
    out["embed"] = {"texts_per_s": len(texts) / s, "tokens_per_s": toks / s}
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        m.encode([q], batch_size=1)
        lat.append(time.perf_counter() - t0)
    out["query_embed"] = {"p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95), "p99_ms": pct(lat, 0.99)}

    import bm25s, Stemmer

    stemmer = Stemmer.Stemmer("english")
    ct = bm25s.tokenize(corpus_all, stopwords="en", stemmer=stemmer, show_progress=False)
    r = bm25s.BM25(k1=1.2, b=0.75)
    r.index(ct, show_progress=False)
    t0 = time.perf_counter()
    for q in queries:
        qt = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False)
        r.retrieve(qt, k=100, show_progress=False, n_threads=1)
    out["lexical"] = {"qps": len(queries) / (time.perf_counter() - t0)}

    if a.vectors:
        import hnswlib

        data = np.fromfile(a.vectors, dtype="<f4").reshape(-1, a.dim)
        qv = np.fromfile(os.path.splitext(a.vectors)[0] + ".queries", dtype="<f4").reshape(-1, a.dim)
        t0 = time.perf_counter()
        exact = [np.argsort(-(data @ q))[:10] for q in qv]
        exact_qps = len(qv) / (time.perf_counter() - t0)
        idx = hnswlib.Index(space="ip", dim=a.dim)
        idx.init_index(max_elements=len(data), M=16, ef_construction=200)
        t0 = time.perf_counter()
        idx.add_items(data, np.arange(len(data)), num_threads=2)
        build = time.perf_counter() - t0
        idx.set_num_threads(1)
        curve = []
        for ef in [16, 32, 64, 128, 256]:
            idx.set_ef(ef)
            t0 = time.perf_counter()
            hits = 0
            for q, ex in zip(qv, exact):
                labels, _ = idx.knn_query(q, k=10)
                hits += len(set(labels[0].tolist()) & set(ex.tolist()))
            curve.append({"ef": ef, "recall@10": hits / (10 * len(qv)), "qps": len(qv) / (time.perf_counter() - t0)})
        out["dense"] = {"vectors": len(data), "exact_qps": exact_qps, "build_s": build, "curve": curve}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()

"""The folder written by `cargo run --release -p pinpoint-experiments --example dump_adapt -- INDEX BEIR_DIR OUT`, and the
retrieval arithmetic both query-adapter experiments score with (query_adapter.py learns from
labels, ict_adapter.py from the corpus alone): a document scores as its best chunk (MaxP, as
in the engine), fusion is a min-max convex combination over both legs' top 100.
"""
import math

import numpy as np
import torch

DIM = 384
ALPHAS = (0.4, 0.5, 0.6)


class Dump:
    """Chunk vectors, chunk -> document, and per split: query vectors, judgements, BM25 top 100."""

    def __init__(self, folder):
        self.dir = folder.rstrip("/") + "/"
        self.cdoc = [l.rstrip("\n") for l in open(self.dir + "chunk_doc.txt")]
        self.docs = sorted(set(self.cdoc))
        self.di = {k: i for i, k in enumerate(self.docs)}
        self.CT = torch.tensor(np.fromfile(self.dir + "chunks.f32", dtype="<f4").reshape(-1, DIM))
        self.CD = torch.tensor([self.di[k] for k in self.cdoc])

    def load(self, split):
        """(query vectors, [{doc: grade > 0}], [{doc index: BM25 score}]) of `split`."""
        q = np.fromfile(self.dir + split + ".f32", dtype="<f4").reshape(-1, DIM)
        qs = []
        for line in open(self.dir + split + ".tsv"):
            _qid, r = line.rstrip("\n").split("\t")
            rels = {}
            for x in r.split(","):
                k, g = x.rsplit(":", 1)
                if int(g) > 0:
                    rels[k] = int(g)
            qs.append(rels)
        lex = []
        for line in open(self.dir + split + ".lex"):
            m = {}
            for x in line.split():
                k, s = x.rsplit(":", 1)
                m[self.di[k]] = float(s)
            lex.append(m)
        return q, qs, lex

    def doc_scores(self, qa):
        """A document's score is its best chunk's cosine (MaxP), as in the engine."""
        s = qa @ self.CT.T
        out = torch.full((qa.shape[0], len(self.docs)), -1e9)
        return out.scatter_reduce(1, self.CD.expand(qa.shape[0], -1), s, reduce="amax")

    def ndcg10(self, order, rels):
        dcg = sum((2 ** rels.get(self.docs[o], 0) - 1) / math.log2(i + 2)
                  for i, o in enumerate(order[:10]))
        ideal = sorted(rels.values(), reverse=True)[:10]
        idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
        return dcg / idcg if idcg > 0 else 0.0

    def recall100(self, order, rels):
        top = {self.docs[o] for o in order[:100]}
        return sum(1 for r in rels if r in top) / len(rels)

    def per_query(self, qa, qs, lex):
        """(dense nDCG@10, {alpha: fused nDCG@10}, {alpha: fused R@100}) per query."""
        s = self.doc_scores(qa)
        out = []
        for i, rels in enumerate(qs):
            order = torch.argsort(s[i], descending=True)[:100].tolist()
            f = {a: fuse(s[i], lex[i], a) for a in ALPHAS}
            out.append((self.ndcg10(order, rels), {a: self.ndcg10(o, rels) for a, o in f.items()},
                        {a: self.recall100(o, rels) for a, o in f.items()}))
        return out


def fuse(row, lexm, alpha):
    """Min-max convex fusion of one query's dense row with its BM25 top 100."""
    cand = list(set(torch.topk(row, 100).indices.tolist()) | set(lexm))
    ds = row[cand].numpy()
    ls = np.array([lexm.get(c, 0.0) for c in cand])
    mm = lambda v: (v - v.min()) / (v.max() - v.min() + 1e-9)
    f = alpha * mm(ds) + (1 - alpha) * mm(ls)
    return [cand[i] for i in np.argsort(-f)]


def summary(rows, idx=None):
    rows = [rows[i] for i in idx] if idx is not None else rows
    dense = np.mean([r[0] for r in rows])
    fused = {a: round(float(np.mean([r[1][a] for r in rows])), 4) for a in ALPHAS}
    rec = {a: round(float(np.mean([r[2][a] for r in rows])), 4) for a in ALPHAS}
    return f"dense {dense:.4f}  fused nDCG@10 {fused}  R@100 {rec}"


def grouped_folds(qs, k=5):
    """A fold per query; queries sharing a relevant document share a fold (as `tune` does),
    so a fold's held-out score is not memory of its judged documents."""
    parent = list(range(len(qs)))

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first = {}
    for i, rels in enumerate(qs):
        for doc in sorted(rels):
            if doc in first:
                a, b = root(i), root(first[doc])
                parent[max(a, b)] = min(a, b)
            else:
                first[doc] = i
    groups = {}
    for i in range(len(qs)):
        groups.setdefault(root(i), []).append(i)
    folds, sizes = np.zeros(len(qs), dtype=int), [0] * k
    for g in sorted(groups.values(), key=lambda g: (-len(g), g[0])):
        f = int(np.argmin(sizes))
        folds[g] = f
        sizes[f] += len(g)
    return folds

"""Experiment behind "Learned query adapter" in docs/decisions.md: does a linear map on the
query embedding, learned from labelled queries, make the dense leg better on questions about
documents it has not seen labelled?

Inputs come from `cargo run --release --example dump_adapt -- INDEX BEIR_DIR OUT` (chunk
vectors, chunk -> document, query vectors, judgements, each query's BM25 top 100). Needs
numpy and torch (any recent CPU build).

    python query_adapter.py OUT

Prints, for the training split, dense nDCG@10 and fused nDCG@10 / recall@100 (min-max convex
fusion over both legs' top 100, a few weights) of the adapter trained on 4 folds and scored on
the 5th, with two kinds of fold: by query order, and grouped so that queries sharing a relevant
document are in one fold. Then the adapter trained on all training queries, on the test split,
split by whether a test query's relevant document is also judged relevant for a training query.
"""
import math
import sys

import numpy as np
import torch

torch.set_num_threads(2)
torch.manual_seed(0)
DIM = 384
ALPHAS = (0.4, 0.5, 0.6)
d = sys.argv[1].rstrip("/") + "/"
C = np.fromfile(d + "chunks.f32", dtype="<f4").reshape(-1, DIM)
cdoc = [l.rstrip("\n") for l in open(d + "chunk_doc.txt")]
docs = sorted(set(cdoc))
di = {k: i for i, k in enumerate(docs)}
CT = torch.tensor(C)
CD = torch.tensor([di[k] for k in cdoc])


def load(split):
    q = np.fromfile(d + split + ".f32", dtype="<f4").reshape(-1, DIM)
    qs = []
    for line in open(d + split + ".tsv"):
        qid, r = line.rstrip("\n").split("\t")
        rels = {}
        for x in r.split(","):
            k, g = x.rsplit(":", 1)
            if int(g) > 0:
                rels[k] = int(g)
        qs.append(rels)
    lex = []
    for line in open(d + split + ".lex"):
        m = {}
        for x in line.split():
            k, s = x.rsplit(":", 1)
            m[di[k]] = float(s)
        lex.append(m)
    return q, qs, lex


def doc_scores(qa):
    """A document's score is its best chunk's cosine (MaxP), as in the engine."""
    s = qa @ CT.T
    out = torch.full((qa.shape[0], len(docs)), -1e9)
    return out.scatter_reduce(1, CD.expand(qa.shape[0], -1), s, reduce="amax")


def ndcg10(order, rels):
    dcg = sum((2 ** rels.get(docs[o], 0) - 1) / math.log2(i + 2) for i, o in enumerate(order[:10]))
    ideal = sorted(rels.values(), reverse=True)[:10]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall100(order, rels):
    top = {docs[o] for o in order[:100]}
    return sum(1 for r in rels if r in top) / len(rels)


def fuse(row, lexm, alpha):
    cand = list(set(torch.topk(row, 100).indices.tolist()) | set(lexm))
    ds = row[cand].numpy()
    ls = np.array([lexm.get(c, 0.0) for c in cand])
    mm = lambda v: (v - v.min()) / (v.max() - v.min() + 1e-9)
    f = alpha * mm(ds) + (1 - alpha) * mm(ls)
    return [cand[i] for i in np.argsort(-f)]


def per_query(qa, qs, lex):
    """(dense nDCG@10, {alpha: fused nDCG@10}, {alpha: fused R@100}) per query."""
    s = doc_scores(qa)
    out = []
    for i, rels in enumerate(qs):
        order = torch.argsort(s[i], descending=True)[:100].tolist()
        f = {a: fuse(s[i], lex[i], a) for a in ALPHAS}
        out.append((ndcg10(order, rels), {a: ndcg10(o, rels) for a, o in f.items()},
                    {a: recall100(o, rels) for a, o in f.items()}))
    return out


def train(q, qs, epochs=50, tau=0.05, lr=1e-3):
    """q' = normalise(q + qW), W from zero, softmax over every chunk (contrastive, in the
    manner of MultipleNegativesRanking with the whole corpus as negatives)."""
    q = torch.tensor(q)
    pos = torch.zeros(len(qs), len(cdoc), dtype=torch.bool)
    for i, rels in enumerate(qs):
        pos[i] = torch.isin(CD, torch.tensor([di[k] for k in rels if k in di]))
    w = torch.zeros(DIM, DIM, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(epochs):
        s = torch.nn.functional.normalize(q + q @ w, dim=1) @ CT.T / tau
        loss = (torch.logsumexp(s, 1) - torch.logsumexp(s.masked_fill(~pos, -1e9), 1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = w.detach()
    return lambda x: torch.nn.functional.normalize(torch.tensor(x) + torch.tensor(x) @ w, dim=1)


def grouped_folds(qs, k=5):
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


def summary(rows, idx=None):
    rows = [rows[i] for i in idx] if idx is not None else rows
    dense = np.mean([r[0] for r in rows])
    fused = {a: round(float(np.mean([r[1][a] for r in rows])), 4) for a in ALPHAS}
    rec = {a: round(float(np.mean([r[2][a] for r in rows])), 4) for a in ALPHAS}
    return f"dense {dense:.4f}  fused nDCG@10 {fused}  R@100 {rec}"


qtr, rtr, ltr = load("train")
qte, rte, lte = load("test")
print("train, no adapter:      ", summary(per_query(torch.tensor(qtr), rtr, ltr)))
for name, folds in [("by query order", np.arange(len(rtr)) % 5), ("grouped", grouped_folds(rtr))]:
    rows = [None] * len(rtr)
    for f in range(5):
        tr, ho = np.where(folds != f)[0], np.where(folds == f)[0]
        g = train(qtr[tr], [rtr[i] for i in tr])
        for i, r in zip(ho, per_query(g(qtr[ho]), [rtr[i] for i in ho], [ltr[i] for i in ho])):
            rows[i] = r
    print(f"train, held out {name}:", summary(rows), flush=True)
seen = {doc for rels in rtr for doc in rels}
overlap = [i for i, rels in enumerate(rte) if any(doc in seen for doc in rels)]
fresh = [i for i in range(len(rte)) if i not in set(overlap)]
base = per_query(torch.tensor(qte), rte, lte)
adapted = per_query(train(qtr, rtr)(qte), rte, lte)
for name, idx in [("all", None), (f"{len(overlap)} with a document judged in train", overlap),
                  (f"{len(fresh)} about unseen documents", fresh)]:
    print(f"test {name}: no adapter", summary(base, idx))
    print(f"test {name}: adapter   ", summary(adapted, idx), flush=True)

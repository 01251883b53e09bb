"""Experiment behind "Corpus-only query adapter (inverse cloze)" in docs/decisions.md: can the
dense leg adapt to a collection from its documents alone, with no labelled query?

The labelled adapter (query_adapter.py) learned which documents were relevant, not how to
match. This one never sees a judgement: its training pairs come from the corpus (the inverse
cloze task): a sentence of a document is the pseudo-query, and the same document with that
sentence removed is its positive; every other document's chunks are negatives. It learns
q' = normalise(q + qW) on those pairs, then scores the real queries of the training split,
which it has not seen, so all of them are held out.

Inputs: the folder written by `cargo run --release --example dump_adapt -- INDEX BEIR_DIR OUT`,
the BEIR folder (its corpus.jsonl) and the model folder. Needs the reference venv (setup.sh).

    python ict_adapter.py OUT BEIR_DIR MODEL_DIR [PAIRS_PER_DOC]
"""
import math
import random
import re
import sys

import json
import numpy as np
import torch
from sentence_transformers import SentenceTransformer

torch.set_num_threads(2)
torch.manual_seed(0)
random.seed(0)
DIM = 384
ALPHAS = (0.4, 0.5, 0.6)
d = sys.argv[1].rstrip("/") + "/"
beir = sys.argv[2].rstrip("/") + "/"
model = SentenceTransformer(sys.argv[3], device="cpu")
per_doc = int(sys.argv[4]) if len(sys.argv) > 4 else 2
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


def summary(rows, idx=None):
    rows = [rows[i] for i in idx] if idx is not None else rows
    dense = np.mean([r[0] for r in rows])
    fused = {a: round(float(np.mean([r[1][a] for r in rows])), 4) for a in ALPHAS}
    rec = {a: round(float(np.mean([r[2][a] for r in rows])), 4) for a in ALPHAS}
    return f"dense {dense:.4f}  fused nDCG@10 {fused}  R@100 {rec}"



# --- pseudo-queries from the corpus: (sentence, title + rest of the document) ---------------
SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")
queries, positives, owners = [], [], []
for line in open(beir + "corpus.jsonl"):
    doc = json.loads(line)
    if doc["_id"] not in di:
        continue
    sents = [s for s in SPLIT.split(doc["text"]) if len(s.split()) >= 6]
    if len(sents) < 3:
        continue
    for s in random.sample(sents, min(per_doc, len(sents))):
        rest = " ".join(x for x in sents if x is not s)
        queries.append(s)
        positives.append((doc["title"] + ". " + rest).strip())
        owners.append(di[doc["_id"]])
print(f"{len(queries)} pseudo-queries from {len(set(owners))} documents", flush=True)
Q = torch.tensor(model.encode(queries, batch_size=64, convert_to_numpy=True, normalize_embeddings=True))
P = torch.tensor(model.encode(positives, batch_size=32, convert_to_numpy=True, normalize_embeddings=True))
O = torch.tensor(owners)
print("encoded", flush=True)


def train_ict(epochs, tau=0.05, lr=1e-3, batch=256):
    w = torch.zeros(DIM, DIM, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    n = len(queries)
    for _ in range(epochs):
        perm = torch.randperm(n)
        for b in range(0, n, batch):
            idx = perm[b:b + batch]
            q = Q[idx]
            qa = torch.nn.functional.normalize(q + q @ w, dim=1)
            inb = qa @ P[idx].T / tau  # in-batch positives on the diagonal
            neg = qa @ CT.T / tau  # the corpus's chunks, the owner's own masked out
            neg = neg.masked_fill(CD.unsqueeze(0) == O[idx].unsqueeze(1), -1e9)
            s = torch.cat([inb, neg], 1)
            loss = torch.nn.functional.cross_entropy(s, torch.arange(len(idx)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    w = w.detach()
    return lambda x: torch.nn.functional.normalize(torch.tensor(x) + torch.tensor(x) @ w, dim=1)


qtr, rtr, ltr = load("train")
print("train, no adapter:", summary(per_query(torch.tensor(qtr), rtr, ltr)), flush=True)
for epochs in (1, 2, 4):
    g = train_ict(epochs)
    print(f"train, ICT adapter {epochs} epoch(s):", summary(per_query(g(qtr), rtr, ltr)), flush=True)

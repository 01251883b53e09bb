"""Experiment behind "Corpus-only query adapter (inverse cloze)" in docs/decisions.md: can the
dense leg adapt to a collection from its documents alone, with no labelled query?

The labelled adapter (query_adapter.py) learned which documents were relevant, not how to
match. This one never sees a judgement: its training pairs come from the corpus (the inverse
cloze task): a sentence of a document is the pseudo-query, and the same document with that
sentence removed is its positive; every other document's chunks are negatives. It learns
q' = normalise(q + qW) on those pairs, then scores the real queries of the training split,
which it has not seen, so all of them are held out.

Inputs: the folder written by `cargo run --release -p pinpoint-experiments --example dump_adapt -- INDEX BEIR_DIR OUT`,
the BEIR folder (its corpus.jsonl) and the model folder. Needs the reference venv (setup.sh).

    python ict_adapter.py OUT BEIR_DIR MODEL_DIR [PAIRS_PER_DOC]
"""
import json
import random
import re
import sys

import torch
from sentence_transformers import SentenceTransformer

from adapt_dump import DIM, Dump, summary

torch.set_num_threads(2)
torch.manual_seed(0)
random.seed(0)
SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")


def pseudo_queries(beir, dump, per_doc):
    """(sentence, title + rest of the document, owner) triples: the inverse cloze task."""
    queries, positives, owners = [], [], []
    for line in open(beir + "corpus.jsonl"):
        doc = json.loads(line)
        if doc["_id"] not in dump.di:
            continue
        sents = [s for s in SPLIT.split(doc["text"]) if len(s.split()) >= 6]
        if len(sents) < 3:
            continue
        for s in random.sample(sents, min(per_doc, len(sents))):
            rest = " ".join(x for x in sents if x is not s)
            queries.append(s)
            positives.append((doc["title"] + ". " + rest).strip())
            owners.append(dump.di[doc["_id"]])
    return queries, positives, owners


def train_ict(dump, Q, P, O, epochs, tau=0.05, lr=1e-3, batch=256):
    w = torch.zeros(DIM, DIM, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    n = len(Q)
    for _ in range(epochs):
        perm = torch.randperm(n)
        for b in range(0, n, batch):
            idx = perm[b:b + batch]
            q = Q[idx]
            qa = torch.nn.functional.normalize(q + q @ w, dim=1)
            inb = qa @ P[idx].T / tau  # in-batch positives on the diagonal
            neg = qa @ dump.CT.T / tau  # the corpus's chunks, the owner's own masked out
            neg = neg.masked_fill(dump.CD.unsqueeze(0) == O[idx].unsqueeze(1), -1e9)
            s = torch.cat([inb, neg], 1)
            loss = torch.nn.functional.cross_entropy(s, torch.arange(len(idx)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    w = w.detach()
    return lambda x: torch.nn.functional.normalize(torch.tensor(x) + torch.tensor(x) @ w, dim=1)


def main():
    dump = Dump(sys.argv[1])
    beir = sys.argv[2].rstrip("/") + "/"
    model = SentenceTransformer(sys.argv[3], device="cpu")
    per_doc = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    queries, positives, owners = pseudo_queries(beir, dump, per_doc)
    print(f"{len(queries)} pseudo-queries from {len(set(owners))} documents", flush=True)
    Q = torch.tensor(model.encode(queries, batch_size=64, convert_to_numpy=True, normalize_embeddings=True))
    P = torch.tensor(model.encode(positives, batch_size=32, convert_to_numpy=True, normalize_embeddings=True))
    O = torch.tensor(owners)
    print("encoded", flush=True)
    qtr, rtr, ltr = dump.load("train")
    print("train, no adapter:", summary(dump.per_query(torch.tensor(qtr), rtr, ltr)), flush=True)
    for epochs in (1, 2, 4):
        g = train_ict(dump, Q, P, O, epochs)
        print(f"train, ICT adapter {epochs} epoch(s):", summary(dump.per_query(g(qtr), rtr, ltr)), flush=True)


if __name__ == "__main__":
    main()

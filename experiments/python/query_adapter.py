"""Experiment behind "Learned query adapter" in docs/decisions.md: does a linear map on the
query embedding, learned from labelled queries, make the dense leg better on questions about
documents it has not seen labelled?

Inputs come from `cargo run --release -p pinpoint-experiments --example dump_adapt -- INDEX BEIR_DIR OUT` (chunk
vectors, chunk -> document, query vectors, judgements, each query's BM25 top 100). Needs
numpy and torch (any recent CPU build).

    python query_adapter.py OUT

Prints, for the training split, dense nDCG@10 and fused nDCG@10 / recall@100 (min-max convex
fusion over both legs' top 100, a few weights) of the adapter trained on 4 folds and scored on
the 5th, with two kinds of fold: by query order, and grouped so that queries sharing a relevant
document are in one fold. Then the adapter trained on all training queries, on the test split,
split by whether a test query's relevant document is also judged relevant for a training query.
"""
import sys

import numpy as np
import torch

from adapt_dump import DIM, Dump, grouped_folds, summary

torch.set_num_threads(2)
torch.manual_seed(0)


def train(dump, q, qs, epochs=50, tau=0.05, lr=1e-3):
    """q' = normalise(q + qW), W from zero, softmax over every chunk (contrastive, in the
    manner of MultipleNegativesRanking with the whole corpus as negatives)."""
    q = torch.tensor(q)
    pos = torch.zeros(len(qs), len(dump.cdoc), dtype=torch.bool)
    for i, rels in enumerate(qs):
        pos[i] = torch.isin(dump.CD, torch.tensor([dump.di[k] for k in rels if k in dump.di]))
    w = torch.zeros(DIM, DIM, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(epochs):
        s = torch.nn.functional.normalize(q + q @ w, dim=1) @ dump.CT.T / tau
        loss = (torch.logsumexp(s, 1) - torch.logsumexp(s.masked_fill(~pos, -1e9), 1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = w.detach()
    return lambda x: torch.nn.functional.normalize(torch.tensor(x) + torch.tensor(x) @ w, dim=1)


def main():
    dump = Dump(sys.argv[1])
    qtr, rtr, ltr = dump.load("train")
    qte, rte, lte = dump.load("test")
    print("train, no adapter:      ", summary(dump.per_query(torch.tensor(qtr), rtr, ltr)))
    for name, folds in [("by query order", np.arange(len(rtr)) % 5), ("grouped", grouped_folds(rtr))]:
        rows = [None] * len(rtr)
        for f in range(5):
            tr, ho = np.where(folds != f)[0], np.where(folds == f)[0]
            g = train(dump, qtr[tr], [rtr[i] for i in tr])
            for i, r in zip(ho, dump.per_query(g(qtr[ho]), [rtr[i] for i in ho], [ltr[i] for i in ho])):
                rows[i] = r
        print(f"train, held out {name}:", summary(rows), flush=True)
    seen = {doc for rels in rtr for doc in rels}
    overlap = [i for i, rels in enumerate(rte) if any(doc in seen for doc in rels)]
    fresh = [i for i in range(len(rte)) if i not in set(overlap)]
    base = dump.per_query(torch.tensor(qte), rte, lte)
    adapted = dump.per_query(train(dump, qtr, rtr)(qte), rte, lte)
    for name, idx in [("all", None), (f"{len(overlap)} with a document judged in train", overlap),
                      (f"{len(fresh)} about unseen documents", fresh)]:
        print(f"test {name}: no adapter", summary(base, idx))
        print(f"test {name}: adapter   ", summary(adapted, idx), flush=True)


if __name__ == "__main__":
    main()

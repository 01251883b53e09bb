"""Experiment behind "Document expansion from dense neighbours" in docs/decisions.md: can the
lexical leg find the relevant documents that neither leg ranks in its top 100 (vocabulary
mismatch) if each document's BM25 text also holds the words of its nearest documents in
meaning (cluster-based document expansion)? Label-free: the neighbours come from the chunk
vectors alone.

Each document is expanded with the titles (or the full texts) of its K nearest documents by
cosine of their mean chunk vectors, in its own text or in a second field whose BM25 is added
with weight 0.1-0.5; BM25 (bm25s, English stemmer and stopwords, k1 1.2, b 0.75)
over plain and expanded texts; fused with the dense leg (a document's best chunk cosine) by
z-scores with equal weights over the union of both legs' top 100, as the engine's default
fusion. Train split only; the variant is then chosen on four grouped folds and scored on the
fifth (on the reranked ranking when the dump has MaxSim scores).

Inputs: the folder written by `cargo run --release -p pinpoint-experiments --example dump_adapt -- INDEX BEIR_DIR OUT`
and the BEIR folder. Needs the reference venv (setup.sh).

    python doc_expansion.py OUT BEIR_DIR
"""
import json
import sys

import bm25s
import numpy as np
import Stemmer
import torch

from adapt_dump import Dump, grouped_folds

torch.set_num_threads(2)


def zfuse(lex_row, den_row, depth=100):
    """Document indices by equal-weight z-score fusion over both legs' top `depth`, and
    their fused scores."""
    cand = np.union1d(np.argsort(-lex_row)[:depth], np.argsort(-den_row)[:depth])
    z = lambda v: (v - v.mean()) / (v.std() + 1e-9)
    f = z(lex_row[cand]) + z(den_row[cand])
    order = np.argsort(-f, kind="stable")
    return cand[order].tolist(), f[order]


def rerank(order, fused, maxsim, weight, depth=20):
    """The head reordered as the engine's default does (`blend_rerank`): min-max of the fused
    score and of MaxSim within the head, blended with `weight`."""
    n = min(depth, len(order))
    if n == 0 or weight <= 0:
        return order
    mm = lambda v: (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else np.ones_like(v)
    head = np.array(order[:n])
    s = weight * mm(maxsim[head]) + (1 - weight) * mm(fused[:n])
    return head[np.argsort(-s, kind="stable")].tolist() + order[n:]


def fade(tokens, full_until=32, off_from=64):
    """`LengthFade::TOKENS`: the share of the reranker's weight a query of `tokens` keeps."""
    return 1.0 if tokens <= full_until else 0.0 if tokens >= off_from else \
        (off_from - tokens) / (off_from - full_until)


def main():
    dump = Dump(sys.argv[1])
    beir = sys.argv[2].rstrip("/") + "/"
    docs = {}
    for line in open(beir + "corpus.jsonl"):
        o = json.loads(line)
        docs[str(o["_id"])] = (o.get("title", ""), o.get("text", ""))
    queries = {}
    for line in open(beir + "queries.jsonl"):
        o = json.loads(line)
        queries[str(o["_id"])] = o["text"]
    qv, rels, _ = dump.load("train")
    qids = [l.split("\t")[0] for l in open(dump.dir + "train.tsv")]
    titles = [docs[k][0] for k in dump.docs]
    texts = [docs[k][0] + " " + docs[k][1] for k in dump.docs]

    # Each document's mean chunk vector, normalised; its nearest other documents by cosine.
    n = len(dump.docs)
    mean = torch.zeros(n, dump.CT.shape[1]).index_add_(0, dump.CD, dump.CT)
    mean = torch.nn.functional.normalize(mean, dim=1)
    sim = mean @ mean.T
    sim.fill_diagonal_(-1.0)
    near = torch.topk(sim, 10, dim=1).indices.tolist()

    den = dump.doc_scores(torch.tensor(qv)).numpy().astype(np.float64)
    stemmer = Stemmer.Stemmer("english")
    qtok = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer,
                          show_progress=False, return_ids=False)

    def bm25(corpus):
        """Every query's BM25 score of every document of `corpus`."""
        r = bm25s.BM25(k1=1.2, b=0.75)
        r.index(bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=False),
                show_progress=False)
        out = np.zeros((len(qtok), n))
        for i, q in enumerate(qtok):
            q = [t for t in q if t in r.vocab_dict]
            if q:
                out[i] = r.get_scores(q)
        return out

    plain = bm25(texts)
    fields = {}
    for k in (1, 3, 5):
        fields[f"{k} titles"] = bm25([" ".join(titles[j] for j in near[i][:k]) for i in range(n)])
    for k in (1, 3):
        fields[f"{k} texts"] = bm25([" ".join(texts[j] for j in near[i][:k]) for i in range(n)])
    variants = [("plain", plain)]
    # The neighbours' words in the document's own text (one field, BM25 over the whole)...
    for k in (1, 3, 5):
        variants.append((f"text + {k} titles", bm25([
            t + " " + " ".join(titles[j] for j in near[i][:k]) for i, t in enumerate(texts)])))
    for k in (1, 3):
        variants.append((f"text + {k} texts", bm25([
            t + " " + " ".join(texts[j] for j in near[i][:k]) for i, t in enumerate(texts)])))
    # ... or in a field of their own, its BM25 added with a smaller weight.
    for name, f in fields.items():
        for lam in (0.1, 0.2, 0.3, 0.5):
            variants.append((f"+ {lam} x {name}", plain + lam * f))
    # With `dump_adapt` run under PP_MAXSIM=1: every document's token MaxSim, so the fused
    # head can be reranked as the default does (depth 20, weight 0.6, fading on long queries).
    try:
        ms = np.fromfile(dump.dir + "train.maxsim", dtype="<f4").reshape(len(qtok), n)
        weights = [0.6 * fade(int(l)) for l in open(dump.dir + "train.qtok")]
    except FileNotFoundError:
        ms = None
    rows = []  # per variant: per query (nDCG@10, R@100) of the fused (or reranked) ranking
    for name, lex in variants:
        m, mr = [], []
        for i in range(len(qtok)):
            fused, scores = zfuse(lex[i], den[i])
            m.append((dump.ndcg10(fused, rels[i]), dump.recall100(fused, rels[i])))
            if ms is not None:
                r = rerank(fused, scores, ms[i], weights[i])
                mr.append((dump.ndcg10(r, rels[i]), dump.recall100(r, rels[i])))
        m = np.array(m)
        rows.append(np.array(mr) if mr else m)
        lo = np.argsort(-lex, axis=1, kind="stable")[:, :100]
        line = (f"{name:24} BM25 nDCG@10 {np.mean([dump.ndcg10(lo[i].tolist(), rels[i]) for i in range(len(qtok))]):.4f}"
                f"   fused nDCG@10 {m[:, 0].mean():.4f} R@100 {m[:, 1].mean():.4f}")
        if mr:
            line += f"   reranked nDCG@10 {rows[-1][:, 0].mean():.4f}"
        print(line, flush=True)
    # Held out: each grouped fold takes the variant best on the other four (by nDCG@10).
    folds = grouped_folds(rels)
    held = np.zeros((len(qtok), 2))
    picks = []
    for f in range(5):
        tr, ho = folds != f, folds == f
        best = int(np.argmax([r[tr, 0].mean() for r in rows]))
        picks.append(variants[best][0])
        held[ho] = rows[best][ho]
    print(f"held out: nDCG@10 {held[:, 0].mean():.4f} R@100 {held[:, 1].mean():.4f} "
          f"(plain {rows[0][:, 0].mean():.4f} / {rows[0][:, 1].mean():.4f}); picks {picks}")


if __name__ == "__main__":
    main()

"""What the code-search collection builders share: walking the source trees, and writing the
collection in BEIR format (corpus.jsonl, queries.jsonl, qrels/{train,test}.tsv).

A query whose text is shared by several functions is dropped (ambiguous labels), and so is one
under the minimum length (4 words; 25 with `--long`). Queries are split into train/test
halves by a hash of their id, so the split does not depend on file order.
"""

import hashlib
import json
import os
import sys
from collections import defaultdict


def main(usage, suffix, skip_dirs, functions):
    """`functions(path, long_queries)` yields (name, query, code) for each documented function
    of one source file."""
    args = sys.argv[1:]
    long_queries = "--long" in args
    args = [a for a in args if a != "--long"]
    if len(args) < 2:
        sys.exit(usage)
    out, min_words = args[0], (25 if long_queries else 4)
    docs, by_query = [], defaultdict(list)
    for top in args[1:]:
        top = top.rstrip("/")
        base = os.path.basename(top)
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in skip_dirs)
            for name in sorted(files):
                if not name.endswith(suffix):
                    continue
                path = os.path.join(root, name)
                rel = os.path.join(base, os.path.relpath(path, top))
                for n, (fn, query, code) in enumerate(functions(path, long_queries)):
                    did = f"{rel}#{fn}#{n}"
                    docs.append({"_id": did, "title": rel, "text": code})
                    if len(query.split()) >= min_words:
                        by_query[query.lower()].append((query, did))
    os.makedirs(os.path.join(out, "qrels"), exist_ok=True)
    with open(os.path.join(out, "corpus.jsonl"), "w") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    queries, splits = [], {"train": [], "test": []}
    for key in sorted(by_query):
        hits = by_query[key]
        if len(hits) != 1:
            continue
        text, did = hits[0]
        qid = "q" + hashlib.sha1(did.encode()).hexdigest()[:12]
        queries.append({"_id": qid, "text": text})
        splits["train" if int(qid[1:], 16) % 2 == 0 else "test"].append((qid, did))
    with open(os.path.join(out, "queries.jsonl"), "w") as f:
        for q in queries:
            f.write(json.dumps(q) + "\n")
    for split, rows in splits.items():
        with open(os.path.join(out, "qrels", f"{split}.tsv"), "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, did in rows:
                f.write(f"{qid}\t{did}\t1\n")
    print(f"{len(docs)} documents, {len(queries)} queries "
          f"(train {len(splits['train'])}, test {len(splits['test'])})")

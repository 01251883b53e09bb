#!/usr/bin/env python3
"""Build a code-search collection in BEIR format from Python sources (e.g. the standard library).

The Python twin of `rust_code.py`, so that a choice made on one language's collection can be
checked on another's: each function or method with a docstring becomes one document, its
source with the docstring taken out, titled with its file path. The query is the docstring's
first sentence, or with `--long` its whole prose (doctest and indented example lines out, at
least 25 words). Queries shared by several functions are dropped; train/test halves are split
by a hash of the query id.

Usage: python_code.py [--long] OUT_DIR SOURCE_DIR [SOURCE_DIR ...]
Standard library only.
"""

import ast
import hashlib
import json
import os
import re
import sys
from collections import defaultdict


def prose(doc):
    """The docstring's prose lines: doctest, indented (code) and field lines left out."""
    out = []
    for line in doc.split("\n"):
        if line.startswith((" ", "\t", ">>>", "...")) or re.match(r"^\s*:\w+", line):
            continue
        out.append(line.strip())
    return " ".join(l for l in out if l).strip()


def first_sentence(doc):
    para = []
    for line in doc.strip().split("\n"):
        line = line.strip()
        if not line:
            break
        para.append(line)
    text = " ".join(para)
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    return (m.group(1) if m else text).strip()


def functions(path, long_queries):
    try:
        with open(path, encoding="utf-8") as f:
            src = f.read()
        tree = ast.parse(src)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return
    lines = src.split("\n")
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node)
        if not doc or not node.body or node.end_lineno is None:
            continue
        ds = node.body[0]
        start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
        body = lines[start : ds.lineno - 1] + lines[ds.end_lineno : node.end_lineno]
        if len(body) < 3 or len(body) > 200:
            continue
        query = prose(doc) if long_queries else first_sentence(doc)
        yield node.name, query, "\n".join(body)


def main():
    args = sys.argv[1:]
    long_queries = "--long" in args
    args = [a for a in args if a != "--long"]
    if len(args) < 2:
        sys.exit(__doc__)
    out, min_words = args[0], (25 if long_queries else 4)
    docs, by_query = [], defaultdict(list)
    for top in args[1:]:
        top = top.rstrip("/")
        base = os.path.basename(top)
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in ("test", "tests", "__pycache__", "site-packages", "dist-packages", "idlelib"))
            for name in sorted(files):
                if not name.endswith(".py"):
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


if __name__ == "__main__":
    main()

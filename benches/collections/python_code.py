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
import re

import beir


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


if __name__ == "__main__":
    beir.main(__doc__, ".py", ("test", "tests", "__pycache__", "site-packages", "dist-packages", "idlelib"), functions)

#!/usr/bin/env python3
"""Build a code-search collection in BEIR format from Rust crate sources.

Why: SciFact is the only labelled collection on these machines, and pinpoint's defaults were
chosen on its train split. A collection of a different kind (code, not abstracts; queries that
describe behaviour, not scientific claims) checks that the defaults are not tuned to it.

Each documented function becomes one document: its signature and body with the doc comment
taken out, titled with its file path. The query is the first sentence of the doc comment that
was taken out (CodeSearchNet's construction). A query whose text is shared by several
functions is dropped (ambiguous labels), and so is one under four words. Queries are split
into train/test halves by a hash of their id, so the split does not depend on file order.

Usage: rust_code.py [--long] OUT_DIR CRATE_DIR [CRATE_DIR ...]
Standard library only.
"""

import re

import beir

FN_RE = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")
# String literals (plain and raw) and char literals: braces inside them are not code.
LIT_RE = re.compile(r'r(#*)"(?:.|\n)*?"\1|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])\'')


def strip_literals(s):
    return LIT_RE.sub(lambda m: " " * len(m.group(0)), s)


def prose(doc_lines):
    """Every prose line of a doc comment (code blocks, headings and links taken out)."""
    out, fenced = [], False
    for line in doc_lines:
        line = line.strip()
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("#"):
            continue
        out.append(line)
    return plain(" ".join(l for l in out if l))


def plain(text):
    """Markdown code spans and links reduced to their text."""
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"\[([^\]]*)\]", r"\1", text).strip()


def first_sentence(doc_lines):
    """The first sentence of the summary paragraph (before a blank line, heading or code)."""
    para = []
    for line in doc_lines:
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("```"):
            break
        para.append(line)
    text = plain(" ".join(para))
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    s = (m.group(1) if m else text).strip()
    return s


def functions(path, long_queries):
    """(name, doc first sentence, code without doc comments) for each documented fn."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError):
        return
    i = 0
    while i < len(lines):
        if not lines[i].strip().startswith("///"):
            i += 1
            continue
        doc = []
        while i < len(lines) and lines[i].strip().startswith("///"):
            doc.append(lines[i].strip()[3:])
            i += 1
        # Attributes between the doc comment and the item.
        j = i
        while j < len(lines) and lines[j].strip().startswith("#["):
            j += 1
        if j >= len(lines):
            break
        m = FN_RE.match(lines[j])
        if not m:
            continue
        # Body: from the signature to the matching closing brace.
        depth, seen, k, body = 0, False, j, []
        while k < len(lines):
            line = lines[k]
            body.append(line)
            code = strip_literals(line.split("//")[0] if "//" in line and '"' not in line else line)
            depth += code.count("{") - code.count("}")
            if "{" in code:
                seen = True
            if (seen and depth <= 0) or (not seen and code.rstrip().endswith(";")):
                break
            k += 1
        if not seen or len(body) < 3 or len(body) > 200:
            i = k + 1
            continue
        code = "\n".join(lines[i:j] + body)
        query = prose(doc) if long_queries else first_sentence(doc)
        yield m.group(7), query, code
        i = k + 1


if __name__ == "__main__":
    beir.main(__doc__, ".rs", ("target", ".git"), functions)

#!/usr/bin/env bash
# Sets up the Python reference stack (sentence-transformers on PyTorch CPU, bm25s with the
# Snowball stemmer, hnswlib) in benches/reference/.venv (ignored by git). Only PyPI is used.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check \
  sentence-transformers bm25s PyStemmer hnswlib numpy
echo "reference stack ready in $here/.venv"

#!/usr/bin/env bash
# The Python package and the Ray cluster test: a virtual environment in python/.venv
# (ignored by git), `pip install ./python` (maturin builds the binding from this checkout),
# Ray with Serve and pytest from PyPI, then the package's tests, which start and stop a
# two-node Ray cluster on loopback themselves.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=python/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "ray[serve]>=2.9" pytest
"$venv/bin/pip" install --quiet --disable-pip-version-check ./python
"$venv/bin/python" -m pytest -q python/tests

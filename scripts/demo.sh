#!/usr/bin/env bash
# The main job end to end on a fresh machine: fetch the model (if absent), build in
# release, index the bundled sample folder, answer a query.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-models.sh
cargo build --release
./target/release/pinpoint index samples --index index-data
./target/release/pinpoint query "${1:-why does the sea rise and fall twice a day}" --index index-data -k 3

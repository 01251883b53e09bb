#!/usr/bin/env bash
# The MCP Inspector's command-line mode (npm @modelcontextprotocol/inspector, fetched by
# npx) calling `pinpoint mcp`'s search tool on the bundled samples, as an agent would.
# CI runs it (.ci/run); it needs Node.js, a release build and the model.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npx >/dev/null || { echo "npx (Node.js) is needed for the MCP Inspector" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./target/release/pinpoint index samples --index "$tmp/index" >/dev/null
out=$(npx -y @modelcontextprotocol/inspector@0 --cli ./target/release/pinpoint mcp --index "$tmp/index" \
  --method tools/call --tool-name search --tool-arg query="how do tides work" --tool-arg k=2 2>/dev/null)
echo "$out" | grep -q '"path": "tides.txt"' || { echo "MCP Inspector: search did not find tides.txt: $out" >&2; exit 1; }
tools=$(npx -y @modelcontextprotocol/inspector@0 --cli ./target/release/pinpoint mcp --index "$tmp/index" --method tools/list 2>/dev/null)
for t in search get list_collections status; do
  echo "$tools" | grep -q "\"name\": \"$t\"" || { echo "MCP Inspector: tool $t missing" >&2; exit 1; }
done
# The same over Streamable HTTP, at `pinpoint serve`'s /mcp.
port=$((20000 + RANDOM % 20000))
./target/release/pinpoint serve --index "$tmp/index" --addr "127.0.0.1:$port" --quiet &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do curl -s "localhost:$port/health" >/dev/null && break; sleep 0.1; done
out=$(npx -y @modelcontextprotocol/inspector@0 --cli "http://127.0.0.1:$port/mcp" --transport http \
  --method tools/call --tool-name search --tool-arg query="how do tides work" --tool-arg k=1 2>/dev/null)
echo "$out" | grep -q '"path": "tides.txt"' || { echo "MCP Inspector over HTTP: no tides.txt: $out" >&2; exit 1; }
echo "MCP Inspector: search and tools/list answered over stdio, search over HTTP" >&2

#!/usr/bin/env bash
# The demo: sample images -> local emulator -> batchcap run -> a few captions. No token, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p demo
batchcap samples demo/images --count 300
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
batchcap serve --port "$port" --latency 0.02 --latency-jitter 0.01 > demo/emulator.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening demo/emulator.log 2>/dev/null && break; sleep 0.1; done
echo "emulator: $(head -n1 demo/emulator.log)"
set +e
batchcap run demo/images --out demo/captions.jsonl --config configs/emulator.toml \
  --api-base "http://127.0.0.1:$port/hf-inference"
code=$?
set -e
echo
echo "a few results (demo/captions.jsonl, one JSON line per image):"
head -n 3 demo/captions.jsonl
echo
echo "run it again and nothing is re-sent (the JSONL is the resume checkpoint):"
batchcap run demo/images --out demo/captions.jsonl --config configs/emulator.toml \
  --api-base "http://127.0.0.1:$port/hf-inference" --quiet || true
echo
echo "a page to look at the captions (thumbnails, search, errors; opens from the disk or as a Static Space):"
batchcap report demo/captions.jsonl --out demo/site || true
echo "report: $(pwd)/demo/site/index.html"
exit $code

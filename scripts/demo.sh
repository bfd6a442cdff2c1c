#!/usr/bin/env bash
# The demo: sample images -> local emulator -> batchcap run -> a few captions. No token, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p demo
batchcap samples demo/images --count 300
# The emulator's address is part of every answer's fingerprint (its base URL names the target), so the demo keeps
# its port in demo/emulator.port: run again, it listens where it did and the captions stay current (nothing re-sent).
port=$(python - demo/emulator.port <<'PY'
import socket, sys
from pathlib import Path
saved = Path(sys.argv[1])
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return 0
        return s.getsockname()[1]
try:
    port = free(int(saved.read_text().strip()))
except (OSError, ValueError):
    port = 0
port = port or free(0)
saved.write_text(f"{port}\n")
print(port)
PY
)
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

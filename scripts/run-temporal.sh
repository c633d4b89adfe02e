#!/usr/bin/env bash
# make run-temporal: a local Temporal dev server (the pinned Temporal CLI,
# built once into ~/.cache/courier; see scripts/temporal.sh), then the demo
# stack against it (config/demo-temporal.yaml). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/temporal.sh)
mkdir -p .courier
echo "run-temporal: starting the Temporal dev server on 127.0.0.1:7233 (UI http://127.0.0.1:8233)" >&2
"$bin" server start-dev --ip 127.0.0.1 --port 7233 --ui-port 8233 --db-filename .courier/temporal.db --log-level warn &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
  "$bin" operator cluster health --address 127.0.0.1:7233 >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "run-temporal: the Temporal dev server exited" >&2; exit 1; }
  sleep 1
done
go run ./cmd/courierd --config config/demo-temporal.yaml

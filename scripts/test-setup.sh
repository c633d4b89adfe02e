#!/usr/bin/env bash
# Prepares a fresh machine for `make test`: checks and starts the real
# components the tests use. Under CI=true a component that cannot be had is an
# error here, so CI never passes by skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test-setup: $*"; }
fail() { echo "test-setup: $*" >&2; exit 1; }

# PostgreSQL on 127.0.0.1:5432 (started by the machine; restart it if stopped).
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  say "PostgreSQL is up on 127.0.0.1:5432"
elif [ "${CI:-}" = "true" ]; then
  fail "PostgreSQL is not reachable on 127.0.0.1:5432"
else
  say "PostgreSQL is not reachable on 127.0.0.1:5432: its tests will skip"
fi

# Google's Pub/Sub emulator (gcloud SDK component).
if sdk=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null) && [ -x "$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator" ]; then
  say "Google's Pub/Sub emulator: $sdk/platform/pubsub-emulator"
elif [ "${CI:-}" = "true" ]; then
  fail "Google's Pub/Sub emulator is not installed (gcloud components install pubsub-emulator)"
fi

# The Cloud Spanner emulator (gcloud SDK component; internal/testenv starts
# it, one per test binary, for jobs/spanner and the spanner store kind).
spanner_emu=""
for root in "${CLOUDSDK_ROOT_DIR:-}" /usr/lib/google-cloud-sdk "${sdk:-}"; do
  if [ -n "$root" ] && [ -x "$root/bin/cloud_spanner_emulator/emulator_main" ]; then
    spanner_emu="$root/bin/cloud_spanner_emulator/emulator_main"
    break
  fi
done
if [ -n "$spanner_emu" ]; then
  say "Cloud Spanner emulator: $spanner_emu"
elif [ "${CI:-}" = "true" ]; then
  fail "the Cloud Spanner emulator is not installed (gcloud components install cloud-spanner-emulator, or Debian's google-cloud-cli-spanner-emulator from Google's apt repository)"
else
  say "the Cloud Spanner emulator is not installed: Spanner store tests will skip"
fi

# The Temporal CLI (its dev server), built once outside courier's module graph.
if bin=$(scripts/temporal.sh); then
  say "Temporal CLI: $bin"
elif [ "${CI:-}" = "true" ]; then
  fail "building the Temporal CLI failed (scripts/temporal.sh)"
else
  say "Temporal CLI unavailable: workflow tests will skip"
fi

# Node's Pub/Sub client, for the emulator's cross-language test.
if command -v npm >/dev/null; then
  if [ ! -d emulator/testdata/node/node_modules ] || [ emulator/testdata/node/package-lock.json -nt emulator/testdata/node/node_modules ]; then
    say "installing @google-cloud/pubsub for the Node test (npm ci)"
    npm ci --prefix emulator/testdata/node --no-audit --no-fund >&2
  fi
elif [ "${CI:-}" = "true" ]; then
  fail "npm is not installed; the emulator's Node client test needs it"
fi

# Debian's Chromium, for the dashboard's browser tests (headless).
if [ ! -x /usr/bin/chromium ] && [ -z "${COURIER_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }) \
      || { [ "${CI:-}" = "true" ] && fail "installing chromium failed"; say "chromium unavailable: browser tests will skip"; }
  elif [ "${CI:-}" = "true" ]; then
    fail "chromium is not installed and cannot be installed here (apt-get install chromium as root)"
  fi
fi

# Go modules and pinned tools, so test time is not download time.
go mod download
go mod download -modfile=tools.mod

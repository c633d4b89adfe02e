#!/usr/bin/env bash
# Prints the path of the Temporal CLI (`temporal`, whose `server start-dev`
# is the local Temporal dev server), building it first if it is not cached.
#
# The CLI is built from its Go module at a pinned version with `go install
# module@version` into a cache folder, OUTSIDE courier's module graph: the
# Temporal server's dependencies never enter courier's go.mod. The first build
# takes a few minutes; later runs print the cached path at once.
#
#   scripts/temporal.sh            # build if missing, print the binary's path
#   $(scripts/temporal.sh) server start-dev --headless --ip 127.0.0.1
#
# Tests find the binary at the same path (or at $COURIER_TEMPORAL_BIN).
# Only the path goes to stdout; progress goes to stderr.
set -euo pipefail

# v1.9.1 cannot be built with go install: its go.mod replaces a nested module
# that the module proxy does not serve. v1.5.1 (Temporal server 1.29) can.
version=v1.5.1
module=github.com/temporalio/cli/cmd/temporal
dir="${HOME}/.cache/courier/temporal/${version}"
bin="${dir}/temporal"

say() { echo "temporal.sh: $*" >&2; }

if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  # One build at a time: a second caller waits for the first to finish.
  exec 9>"${dir}.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    say "building the Temporal CLI ${module}@${version} into ${dir}"
    say "the first build takes several minutes (it compiles the Temporal server); later runs use the cache"
    tmp=$(mktemp -d "${dir}.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # Outside any module: GOWORK off, no GOFLAGS from the caller, this Go.
    start=$(date +%s)
    (cd "$tmp" && GOWORK=off GOFLAGS= GOTOOLCHAIN=local GOBIN="$tmp" go install "${module}@${version}") >&2
    mv "$tmp/temporal" "$bin"
    say "built in $(( $(date +%s) - start ))s: $bin"
  fi
fi
echo "$bin"

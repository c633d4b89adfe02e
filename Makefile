# courier — see README.md. `make run` starts the embedded demo; `make test`
# sets up what the tests need on a fresh machine and runs them.
GO       ?= go
# Tools (buf, protoc plugins, staticcheck, grpcurl) are pinned in tools.mod,
# apart from the library's own go.mod, so that their dependencies never enter
# the module graph of courier or of programs that import it.
TOOL     ?= $(GO) tool -modfile=tools.mod
PKGS     ?= ./...
TESTFLAGS ?=

.PHONY: all build run run-temporal run-demo-backend test test-setup test-go proto proto-check lint fmt-check bench bench-emulator bench-fleet clean

all: build

build:
	$(GO) build $(PKGS)

## run: the embedded demo stack (gRPC 127.0.0.1:8005, HTTP 127.0.0.1:8006).
run:
	$(GO) run ./cmd/courierd

## run-demo-backend: alias of run (the seed's name).
run-demo-backend: run

## run-temporal: a local Temporal dev server, then the demo stack against it.
run-temporal:
	@scripts/run-temporal.sh

## test: everything CI checks: generated code, lint, and the test suites.
test: test-setup proto-check lint test-go

test-setup:
	@scripts/test-setup.sh

test-go:
	$(GO) test -count=1 -timeout 15m $(TESTFLAGS) $(PKGS)

## proto: regenerate Go code from proto/ with the tools pinned in go.mod.
proto:
	$(TOOL) buf generate

## proto-check: fail when the committed generated code is stale.
proto-check: proto
	@git diff --exit-code --stat -- proto examples || { echo "generated code is stale: run 'make proto' and commit the result"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard proto examples)" || { echo "make proto created files that are not committed:"; git ls-files --others --exclude-standard proto examples; exit 1; }

## lint: gofmt, go vet, staticcheck, buf lint.
lint: fmt-check
	$(GO) vet $(PKGS)
	$(TOOL) staticcheck $(PKGS)
	$(TOOL) buf lint

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); test -z "$$out" || { echo "gofmt needed on:"; echo "$$out"; exit 1; }

## bench: whole-system benchmarks (issue figures, median of 3 runs, beside their baselines).
bench:
	$(GO) test -run '^$$' -bench System -benchtime 1x -timeout 30m ./cmd/courierd
	$(GO) test -run '^$$' -bench StoreEndToEnd -benchtime 1x -timeout 30m ./cmd/courierd
	$(GO) test -run '^$$' -bench 'BurnDown|RawReceive' -benchtime 20000x -timeout 30m ./ingest
	$(GO) test -run '^$$' -bench Store -benchtime 1x -count 3 ./jobs/sqlite/ ./jobs/postgres/

## bench-fleet: replicas on one PostgreSQL schema: jobs/s with 1, 2 and 3
## replicas, and with a fleet-wide rate or concurrency limit set far above
## the load (their cost); the shared limiter's cost per token; the dashboard
## on a million jobs.
bench-fleet:
	$(GO) test -run '^$$' -bench Fleet -benchtime 1x -count 3 -timeout 30m .
	$(GO) test -run '^$$' -bench Tokens -benchtime 2s ./limits
	$(GO) test -run '^$$' -bench Overview -benchtime 20x -timeout 30m ./dashboard

## bench-emulator: courier's and Google's emulators on the same workload.
bench-emulator:
	$(GO) test -run '^$$' -bench Emulators -benchtime 1x -timeout 30m ./emulator

clean:
	rm -rf .courier

#!/usr/bin/env bash
# Compares `corepipe analyze` with `dlv core … goroutines -t` on two cores the
# real kernel dumps in this run (100 000 parked goroutines; a 4 GiB live
# heap), printing wall time, peak RSS and goroutines reported by each. Needs
# root (core_pattern) and about 5 GiB free under $BENCH_DIR (default /var/tmp:
# the heap core goes to disk, not to a tmpfs). Cores are deleted afterwards.
# Extra arguments go to the helper, e.g. -only parked or -goroutines 10000.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${COREPIPE_CACHE:-$HOME/.cache/corepipe}"

if [ "$(id -u)" != 0 ]; then
	echo "bench-analyzer: needs root to set core_pattern and dump cores" >&2
	exit 1
fi

# The dlv of the delve version go.mod pins: the comparison is with the same
# core reader corepipe uses.
dlv_version=$(go list -m -f '{{.Version}}' github.com/go-delve/delve)
dlv="$cache/dlv-$dlv_version/dlv"
if [ ! -x "$dlv" ]; then
	GOBIN="$(dirname "$dlv")" go install "github.com/go-delve/delve/cmd/dlv@$dlv_version"
fi
go build -o bin/corepipe ./cmd/corepipe
go build -o bin/bench-analyzer ./internal/testkit/benchtool/cmd/bench-analyzer

bin/bench-analyzer -corepipe bin/corepipe -dlv "$dlv" -dir "${BENCH_DIR:-/var/tmp}" "$@"

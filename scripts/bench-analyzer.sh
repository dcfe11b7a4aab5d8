#!/usr/bin/env bash
# Compares `corepipe analyze` with `dlv core … goroutines -t` on two cores the
# real kernel dumps in this run (100 000 parked goroutines; a 4 GiB live
# heap), printing wall time, peak RSS and goroutines reported by each. Needs
# root (core_pattern) and about 5 GiB free under $BENCH_DIR (default /var/tmp:
# the heap core goes to disk, not to a tmpfs). Cores are deleted afterwards.
# Extra arguments go to the helper, e.g. -only parked or -goroutines 10000.
set -euo pipefail
cd "$(dirname "$0")/.."
export COREPIPE_CACHE="${COREPIPE_CACHE:-$PWD/.cache}"
bin="$COREPIPE_CACHE/bin"
mkdir -p "$bin"

if [ "$(id -u)" != 0 ]; then
	echo "bench-analyzer: needs root to set core_pattern and dump cores" >&2
	exit 1
fi

# The dlv of the delve version go.mod pins: the comparison is with the same
# core reader corepipe uses.
dlv_version=$(go list -m -f '{{.Version}}' github.com/go-delve/delve)
if [ "$("$bin/dlv" version 2>/dev/null | sed -n 's/^Version: //p')" != "${dlv_version#v}" ]; then
	GOBIN="$bin" go install "github.com/go-delve/delve/cmd/dlv@$dlv_version"
fi
go build -o bin/corepipe ./cmd/corepipe
go build -o "$bin/bench-analyzer" ./internal/benchtool/cmd/bench-analyzer

"$bin/bench-analyzer" -corepipe bin/corepipe -dlv "$bin/dlv" -dir "${BENCH_DIR:-/var/tmp}" "$@"

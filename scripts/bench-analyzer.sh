#!/usr/bin/env bash
# Compares `corepipe analyze` with `dlv core … goroutines -t` on three cores
# the real kernel dumps in this run (100 000 parked goroutines; a 4 GiB live
# heap; a MinIO server, a big real binary with DWARF, aborted with SIGABRT
# under GOTRACEBACK=crash once it serves on loopback), printing wall time,
# CPU, peak RSS and goroutines reported by each, the ratios, and the report's
# size as written and as stored. Needs root (core_pattern), the MinIO that
# scripts/install-minio.sh builds, and about 5 GiB free under $BENCH_DIR
# (default /var/tmp: the heap core goes to disk, not to a tmpfs). Cores are
# deleted afterwards. Extra arguments go to the helper, e.g. -only parked,
# -only parked,minio or -goroutines 10000.
#
# To see where the time goes, run the same analysis with a profile:
# bin/corepipe analyze --exe EXE CORE --cpuprofile cpu.out --memprofile mem.out
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

#!/usr/bin/env bash
# Collector ingest benchmark: the same core-like bytes (a third zero pages,
# the rest random, like a Go heap) streamed from a pipe through
# bin/corepipe-collector, `zstd -1 -T0 -q > file` and `cat > file`, in the
# same run, for a 10 MiB and a 1 GiB input. Prints wall time and max RSS of
# the process reading the pipe, the median of RUNS runs.
#
# The collector is run as the kernel would, with a PID that has no /proc
# entry: it reads no process, streams stdin into a spool entry and commits
# it. Unlike zstd and cat it also hashes the core (sha256) and fsyncs it.
#
# With BENCH_HOLD=1 it also runs the Go benchmark that crashes real programs
# under the real kernel (root) and measures how long the dying process is
# held, through the collector vs. a plain core file.
#
# Usage: scripts/bench-collector.sh            (needs zstd and GNU time)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SIZES=${SIZES:-"10 1024"} # MiB

for tool in zstd /usr/bin/time python3; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench-collector: installing zstd and time" >&2
		apt-get update -qq && apt-get install -y -qq zstd time python3 >/dev/null
		break
	fi
done

go build -o bin/corepipe-collector ./cmd/corepipe-collector
work=$(mktemp -d /tmp/bench-collector.XXXXXX)
trap 'rm -rf "$work"' EXIT

# gen MiB FILE: pages of zeros and of seeded random bytes, 1 in 3 zero.
gen() {
	python3 - "$1" "$2" <<'EOF'
import random, sys
mib, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(1)
zero = bytes(4096)
with open(path, "wb", buffering=1 << 20) as f:
    for i in range(mib * 256):
        f.write(zero if i % 3 == 0 else rng.randbytes(4096))
EOF
}

# measure NAME INPUT CMD...: runs `cat INPUT | CMD` RUNS times, prints the
# median wall seconds and max RSS of CMD.
measure() {
	local name=$1 input=$2
	shift 2
	local walls=() rsss=()
	for _ in $(seq "$RUNS"); do
		rm -rf "$work/out" "$work/spool"
		sync
		cat "$input" | /usr/bin/time -f "%e %M" -o "$work/time" "$@"
		read -r wall rss <"$work/time"
		walls+=("$wall")
		rsss+=("$rss")
	done
	local wall rss
	wall=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
	rss=$(printf '%s\n' "${rsss[@]}" | sort -n | tail -1)
	printf '%-10s %6s MiB  wall %6.2fs (runs: %s)  max RSS %5d KiB\n' "$name" "$size" "$wall" "${walls[*]}" "$rss"
	echo "$wall" >"$work/wall.$name"
}

echo "bench-collector: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $RUNS runs each"
for size in $SIZES; do
	input="$work/core.$size"
	gen "$size" "$input"
	cat "$input" >/dev/null # into the page cache for every contender alike
	measure cat "$input" sh -c "cat > $work/out"
	measure zstd "$input" sh -c "zstd -1 -T0 -q > $work/out"
	measure collector "$input" bin/corepipe-collector -spool "$work/spool" \
		999999999 1 1 6 1700000000 18446744073709551615 0 0 1 1
	stored=$(find "$work/spool" -name core.zst -printf '%s')
	awk -v c="$(cat "$work/wall.collector")" -v z="$(cat "$work/wall.zstd")" -v s="$stored" -v m="$size" \
		'BEGIN { printf "           collector / zstd wall: %.2fx; core.zst %d bytes (%.2f of raw)\n", c / z, s, s / (m * 1048576) }'
	rm -f "$input"
done

if [ "${BENCH_HOLD:-0}" = 1 ]; then
	go test -run '^$' -bench KernelPipeHold -benchtime 3x ./collector/
fi

#!/usr/bin/env bash
# Collector hold benchmark: how long the collector keeps the kernel waiting
# on a core, against `zstd -1 -T0` as the handler, in the same run.
#
# The kernel writes a core into the handler's stdin and, with
# core_pipe_limit set, waits until the handler closes it: that wait is how
# long the dying process is held. Here a writer plays the kernel: it
# splices the same core-like bytes (a third zero pages, the rest random, as
# the holder of BenchmarkKernelPipeHold fills its heap) into each
# contender's stdin, closes its end and times until the contender has
# closed its stdin ("hold"), then until the contender exits ("exit"). The contenders, run in
# turn within each round so that a busy machine slows them alike:
#   cat       cat > file
#   zstd      zstd -1 -T0 -q -o file      (the baseline)
#   collector bin/corepipe-collector       (as the kernel runs it, for a PID
#             with no /proc entry: it reads no process, streams stdin into a
#             spool entry, hashes and fsyncs it, commits it)
# It prints the median hold and exit of RUNS rounds, the largest RSS, and
# the ratio collector/zstd of the median holds and of each round's holds.
#
# With BENCH_HOLD=1 it then runs BenchmarkKernelPipeHold (root): real Go
# programs crash under the real kernel with core_pattern naming a file,
# `|zstd -1 -T0`, or the collector, in BENCH_HOLD_RUNS rounds (5), and it
# prints the ratio of their holds.
#
# Usage: scripts/bench-collector.sh   (RUNS=5 SIZES="10 1024" MiB; needs zstd, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SIZES=${SIZES:-"10 1024"} # MiB

for tool in zstd python3; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench-collector: installing zstd and python3" >&2
		apt-get update -qq && apt-get install -y -qq zstd python3 >/dev/null
		break
	fi
done

go build -o bin/corepipe-collector ./cmd/corepipe-collector
work=$(mktemp -d /tmp/bench-collector.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "bench-collector: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $RUNS rounds"
python3 - "$work" "$RUNS" $SIZES <<'EOF'
import os, random, select, shutil, statistics, subprocess, sys, time

work, runs, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
out, spool = os.path.join(work, "out"), os.path.join(work, "spool")
contenders = {
    "cat": ["sh", "-c", "exec cat > " + out],
    "zstd": ["zstd", "-1", "-T0", "-q", "-f", "-o", out],
    # %P %i %I %s %t %c %u %g %d %p: a PID that does not exist, no limit.
    "collector": ["bin/corepipe-collector", "-spool", spool, "999999999", "1", "1", "6",
                  "1700000000", "18446744073709551615", "0", "0", "1", "1"],
}

def gen(mib, path):
    rng = random.Random(1)
    zero = bytes(4096)
    with open(path, "wb", buffering=1 << 20) as f:
        for i in range(mib * 256):
            f.write(zero if i % 3 == 0 else rng.randbytes(4096))

def hold(cmd, core):
    """Feeds core to cmd as the kernel does; returns (hold s, exit s, maxrss KiB)."""
    r, w = os.pipe()
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdin=r, stdout=subprocess.DEVNULL)
    os.close(r)
    with open(core, "rb") as f:
        size, off = os.fstat(f.fileno()).st_size, 0
        try:
            while off < size:
                off += os.sendfile(w, f.fileno(), off, size - off)
        except BrokenPipeError:
            pass  # the reader wanted no more: the kernel stops the dump
    # The kernel's wait_for_dump_helpers: the readers see end of file, and
    # the kernel waits until none holds the pipe. A process cannot watch
    # for that on a pipe it has closed, so watch the contender's stdin.
    # Its peak RSS is read there too: wait4's would count the forked
    # Python before the exec.
    pipe = os.readlink(f"/proc/self/fd/{w}")
    os.close(w)
    held, hwm = None, 0
    while True:
        try:
            stdin = os.readlink(f"/proc/{p.pid}/fd/0")
        except OSError:
            stdin = None
        if held is None and stdin != pipe:
            held = time.monotonic() - start
        try:
            with open(f"/proc/{p.pid}/status") as st:
                for line in st:
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
        except OSError:
            pass
        pid, status = os.waitpid(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.001)
    done = time.monotonic() - start
    if held is None:  # it closed stdin and exited between two looks
        held = done
    if status != 0:
        sys.exit(f"{cmd[0]} failed: status {status}")
    return held, done, hwm

for mib in sizes:
    core = os.path.join(work, f"core.{mib}")
    gen(mib, core)
    results = {name: [] for name in contenders}
    stored = 0
    for _ in range(runs):
        for name, cmd in contenders.items():
            shutil.rmtree(spool, ignore_errors=True)
            if os.path.exists(out):
                os.remove(out)
            os.sync()
            results[name].append(hold(cmd, core))
            if name == "collector":
                for d, _, files in os.walk(spool):
                    if "core.zst" in files:
                        stored = os.path.getsize(os.path.join(d, "core.zst"))
    for name, rs in results.items():
        holds = [r[0] for r in rs]
        print(f"{name:<10} {mib:5d} MiB  hold {statistics.median(holds):6.3f}s  exit {statistics.median(r[1] for r in rs):6.3f}s"
              f"  max RSS {max(r[2] for r in rs):6d} KiB  (holds: {' '.join(f'{h:.3f}' for h in holds)})")
    c, z = [r[0] for r in results["collector"]], [r[0] for r in results["zstd"]]
    print(f"           collector / zstd hold: {statistics.median(c) / statistics.median(z):.2f}x"
          f" (per round: {' '.join(f'{a / b:.2f}' for a, b in zip(c, z))});"
          f" core.zst {stored} bytes ({stored / (mib << 20):.2f} of raw)")
    os.remove(core)
EOF
echo "bench-collector: load after $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "${BENCH_HOLD:-0}" = 1 ]; then
	# Each iteration crashes once per handler in turn: -count rounds of one.
	go test -run '^$' -bench KernelPipeHold -benchtime 1x -count "${BENCH_HOLD_RUNS:-5}" ./collector/ | tee "$work/hold"
	python3 - "$work/hold" <<'EOF2'
import re, statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    m = re.match(r"BenchmarkKernelPipeHold/(\w+)-\d+\s+\d+\s+\d+ ns/op(.*)", line)
    if m:
        metrics = {unit: float(v) for v, unit in re.findall(r"([\d.]+) (\S+)", m[2])}
        rounds.setdefault(m[1], []).append(metrics)
for size, rs in rounds.items():
    med = lambda k: statistics.median(r.get(k, 0) for r in rs)
    if med("zstd-s"):
        per = " ".join(f"{r.get('pipe/zstd', 0):.2f}" for r in rs)
        print(f"kernel hold {size}: collector {med('pipe-s'):.2f}s, zstd {med('zstd-s'):.2f}s, file {med('file-s'):.2f}s;"
              f" collector / zstd {med('pipe-s') / med('zstd-s'):.2f}x"
              f" (per round: {per})")
EOF2
	echo "bench-collector: load after $(cut -d' ' -f1-3 /proc/loadavg)"
fi

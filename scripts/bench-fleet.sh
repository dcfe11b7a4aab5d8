#!/usr/bin/env bash
# Fleet proof (issue 16): e2e.TestFleet on real distributed servers — a
# 3-node JetStream cluster (R3 streams), a 4-process distributed MinIO behind
# a balancer, 6 agents with the fleet's core quota, 3 analyzers and 2 API
# replicas — fed real crashes of three bugs through the kernel and the real
# collector while the NATS leader, a MinIO server, an analyzer and an API
# replica are killed in turn. Prints crashes per minute, crash-to-report
# p50/p99 and the core bytes stored against shipping every core.
#
# Usage: scripts/bench-fleet.sh           (150 crashes, 15 s outages: CI's size)
#        scripts/bench-fleet.sh --long    (1000 crashes, 10 min outages)
# Needs root (it owns core_pattern for the run and restores it).
set -euo pipefail
cd "$(dirname "$0")/.."
crashes=${COREPIPE_FLEET_CRASHES:-150}
outage=${COREPIPE_FLEET_OUTAGE:-15s}
if [ "${1:-}" = --long ]; then
	crashes=1000
	outage=10m
fi
bash scripts/install-tools.sh >/dev/null
echo "bench-fleet: $crashes crashes, $outage outages, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
COREPIPE_FLEET_CRASHES=$crashes COREPIPE_FLEET_OUTAGE=$outage \
	go test -count=1 -run '^TestFleet$' -v -timeout 120m ./e2e 2>&1 |
	grep -E 'fleet:|fault:|^(--- |ok|FAIL)|Error|error' || true

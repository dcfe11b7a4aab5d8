#!/usr/bin/env bash
# Installs what the tests need and a fresh machine lacks: MinIO and
# nats-server built from the Go module proxy at pinned versions into
# $COREPIPE_CACHE/bin. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export COREPIPE_CACHE="${COREPIPE_CACHE:-$PWD/.cache}"
bin="$COREPIPE_CACHE/bin"
mkdir -p "$bin"

scripts/install-minio.sh

if [ ! -x "$bin/nats-server" ]; then
	# The version is the one go.mod pins for the embedded server.
	go build -o "$bin/nats-server" github.com/nats-io/nats-server/v2
	echo "install-tools: built nats-server into $bin"
fi

if [ ! -x "$bin/helm" ]; then
	# deploy's tests render the chart with it; about two minutes to build.
	GOBIN="$bin" go install helm.sh/helm/v3/cmd/helm@v3.22.0
	echo "install-tools: built helm into $bin"
fi

if ! command -v gcc >/dev/null; then
	echo "install-tools: installing gcc (cgo crash tests)"
	apt-get update -qq && apt-get install -y -qq gcc >/dev/null
fi

if [ ! -x /usr/bin/chromium ]; then
	echo "install-tools: installing chromium (the web UI's browser test)"
	apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

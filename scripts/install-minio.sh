#!/bin/sh
# Installs the pinned MinIO server that the blob store tests run against
# (internal/miniotest finds it there). Does nothing when it is installed.
set -eu

minio_version=v0.0.0-20260212201848-7aac2a2c5b7c

repo=$(cd "$(dirname "$0")/.." && pwd)
bindir=${COREPIPE_CACHE:-$repo/.cache}/bin

if [ -x "$bindir/minio" ]; then
	echo "install-minio: $bindir/minio already installed"
	exit 0
fi
mkdir -p "$bindir"
# The build takes a few minutes: MinIO is a large module.
GOBIN=$bindir go install "github.com/minio/minio@$minio_version"
echo "install-minio: installed minio $minio_version into $bindir/minio"

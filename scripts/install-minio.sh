#!/bin/sh
# Installs the pinned MinIO server that the blob store tests run against
# into $COREPIPE_CACHE/minio-<version>/minio (internal/testkit/miniotest finds it
# there). Does nothing when it is installed.
set -eu

# Keep in step with internal/testkit/toolcache.
minio_version=v0.0.0-20260212201848-7aac2a2c5b7c

cache=${COREPIPE_CACHE:-$HOME/.cache/corepipe}
dir=$cache/minio-$minio_version

if [ -x "$dir/minio" ]; then
	echo "install-minio: $dir/minio already installed"
	exit 0
fi
mkdir -p "$dir"
# The build takes a few minutes: MinIO is a large module. go install writes
# into a directory of its own, renamed into place, so that a test never
# runs a half-written binary.
gobin=$(mktemp -d "$cache/minio-build.XXXXXX")
trap 'rm -rf "$gobin"' EXIT
GOBIN=$gobin go install "github.com/minio/minio@$minio_version"
mv "$gobin/minio" "$dir/minio"
echo "install-minio: installed minio $minio_version into $dir/minio"

#!/usr/bin/env bash
# Installs what the tests need and a fresh machine lacks: MinIO, mc,
# nats-server, helm, etcd and kube-apiserver built from the Go module proxy
# at pinned versions, each into $COREPIPE_CACHE/<name>-<version>/ (default
# ~/.cache/corepipe, shared by every clone; internal/testkit/toolcache finds them
# there); gcc and chromium from apt. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export COREPIPE_CACHE="${COREPIPE_CACHE:-$HOME/.cache/corepipe}"

# Keep in step with internal/testkit/toolcache.
helm_version=v3.22.0
mc_version=v0.0.0-20250313080218-cf909e1063a9

# ensure NAME VERSION DESCRIPTION COMMAND…: runs COMMAND, which writes the
# binary to $out, unless $COREPIPE_CACHE/NAME-VERSION/NAME is there. It
# builds beside the target and renames, so that a test starting meanwhile
# never runs a half-written file.
ensure() {
	local name=$1 version=$2 why=$3
	shift 3
	local dest=$COREPIPE_CACHE/$name-$version/$name
	if [ -x "$dest" ]; then
		return
	fi
	echo "install-tools: building $name $version ($why)"
	mkdir -p "$(dirname "$dest")"
	out=$dest.tmp$$
	"$@"
	mv "$out" "$dest"
	echo "install-tools: built $dest"
}

scripts/install-minio.sh

# The version go.mod pins for the embedded server.
nats_version=$(go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' github.com/nats-io/nats-server/v2)
build_nats() { go build -o "$out" github.com/nats-io/nats-server/v2; }
ensure nats-server "$nats_version" "queue tests against a separate server" build_nats

# go_install NAME PACKAGE@VERSION: go install's PACKAGE into a directory of
# its own and moves the binary, NAME, to $out.
go_install() {
	local gobin
	gobin=$(mktemp -d "$COREPIPE_CACHE/$1-build.XXXXXX")
	GOBIN=$gobin go install "$2"
	mv "$gobin/$1" "$out"
	rmdir "$gobin"
}

# deploy's tests render the chart with it; about two minutes to build.
ensure helm "$helm_version" "chart tests" go_install helm "helm.sh/helm/v3/cmd/helm@$helm_version"

# deploy's tests run the chart's MinIO setup script with it.
ensure mc "$mc_version" "the chart's MinIO setup script" go_install mc "github.com/minio/mc@$mc_version"

scripts/install-kube.sh

if ! command -v gcc >/dev/null; then
	echo "install-tools: installing gcc (cgo crash tests)"
	apt-get update -qq && apt-get install -y -qq gcc >/dev/null
fi

if ! command -v debuginfod-find >/dev/null || ! command -v debuginfod >/dev/null; then
	echo "install-tools: installing debuginfod (elfutils' client and server, against the API's debuginfod endpoint)"
	apt-get update -qq && apt-get install -y -qq debuginfod >/dev/null
fi

if ! command -v gdb >/dev/null; then
	echo "install-tools: installing gdb (DEBUGINFOD_URLS at corepipe, e2e's debugger test)"
	apt-get update -qq && apt-get install -y -qq gdb >/dev/null
fi

if ! command -v qemu-aarch64 >/dev/null; then
	echo "install-tools: installing qemu-user (linux/arm64 Go cores for the cross-architecture tests)"
	apt-get update -qq && apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
fi

if [ ! -x /usr/bin/chromium ]; then
	echo "install-tools: installing chromium (the web UI's browser test)"
	apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "install-tools: installing qemu-system-x86 (the real-kernel netconsole test)"
	apt-get update -qq && apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
fi

# Debian's own kernel and busybox for that test's VM, unpacked, not
# installed: the kernel, the modules its initramfs loads (netconsole and its
# configfs, the e1000 NIC, ramoops and its reed_solomon for pstore, all =m
# in Debian), and a static busybox. A cache made before a module was added
# lacks it and is unpacked again.
kernel_dir=$COREPIPE_CACHE/qemu-kernel
kernel_modules="netconsole configfs e1000 ramoops reed_solomon"
kernel_cached=yes
for f in vmlinuz busybox $kernel_modules; do
	[ "$f" = vmlinuz ] || [ "$f" = busybox ] || f=$f.ko
	[ -f "$kernel_dir/$f" ] || kernel_cached=
done
if [ -z "$kernel_cached" ]; then
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
	if [ -z "$kpkg" ]; then
		apt-get update -qq
		kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
	fi
	echo "install-tools: unpacking $kpkg and busybox-static into $kernel_dir"
	work=$(mktemp -d)
	(cd "$work" && apt-get download -qq "$kpkg" busybox-static)
	dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
	dpkg-deb -x "$work"/busybox-static_*.deb "$work/b"
	mkdir -p "$kernel_dir.tmp$$"
	cp "$work"/k/boot/vmlinuz-* "$kernel_dir.tmp$$/vmlinuz"
	for m in $kernel_modules; do
		find "$work/k/lib/modules" -name "$m.ko*" -exec cp {} "$kernel_dir.tmp$$/" \;
	done
	cp "$work/b/bin/busybox" "$kernel_dir.tmp$$/busybox"
	rm -rf "$work" "$kernel_dir"
	mv "$kernel_dir.tmp$$" "$kernel_dir"
fi

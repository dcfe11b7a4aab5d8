#!/usr/bin/env bash
# Builds the real Kubernetes API server and the etcd it stores into, at
# pinned versions, into $COREPIPE_CACHE (internal/testkit/kubetest finds them there):
#   $COREPIPE_CACHE/kube-apiserver-<version>/kube-apiserver
#   $COREPIPE_CACHE/etcd-<version>/etcd
# Each is built from the Go module proxy in a scratch module of its own under
# $COREPIPE_CACHE, so neither touches corepipe's go.mod. Does nothing
# for a binary already there. Cold, on two busy cores: kube-apiserver about
# 8 minutes, etcd 1.5.
set -euo pipefail

# Keep in step with internal/testkit/toolcache.
kube_version=v1.37.2
etcd_version=v3.7.3

cache=${COREPIPE_CACHE:-$HOME/.cache/corepipe}
export GOFLAGS=-mod=mod

# scratch NAME: prints a new directory holding an empty module to build
# NAME in; each run has its own, so concurrent runs cannot disturb each other.
mkdir -p "$cache"
scratches=()
trap 'rm -rf "${scratches[@]}"' EXIT
scratch() {
	local dir
	dir=$(mktemp -d "$cache/build-$1.XXXXXX")
	printf 'module corepipe.local/build/%s\n\ngo 1.26\n' "$1" >"$dir/go.mod"
	echo "$dir"
}

etcd=$cache/etcd-$etcd_version/etcd
if [ -x "$etcd" ]; then
	echo "install-kube: $etcd already installed"
else
	# Debian's etcd (3.4) is too old for the API server's watches. etcd's
	# modules are released together: require every one at the same version
	# so none is resolved to an older release.
	SECONDS=0
	work=$(scratch etcd)
	scratches+=("$work")
	(
		cd "$work"
		go get go.etcd.io/etcd/server/v3@$etcd_version \
			go.etcd.io/etcd/etcdctl/v3@$etcd_version \
			go.etcd.io/etcd/api/v3@$etcd_version \
			go.etcd.io/etcd/client/pkg/v3@$etcd_version \
			go.etcd.io/etcd/client/v3@$etcd_version \
			go.etcd.io/etcd/pkg/v3@$etcd_version
		# etcd's main is the server module's root package.
		go build -trimpath -o "$work/etcd" go.etcd.io/etcd/server/v3
	)
	mkdir -p "$(dirname "$etcd")"
	mv "$work/etcd" "$etcd"
	echo "install-kube: built etcd $etcd_version into $etcd in ${SECONDS}s"
fi

apiserver=$cache/kube-apiserver-$kube_version/kube-apiserver
if [ -x "$apiserver" ]; then
	echo "install-kube: $apiserver already installed"
else
	SECONDS=0
	work=$(scratch kube-apiserver)
	scratches+=("$work")
	(
		cd "$work"
		# k8s.io/kubernetes replaces its staging modules (k8s.io/api,
		# client-go, apiserver, …) with directories of its own repository,
		# which a module outside it cannot see: point each at its published
		# release of the same Kubernetes version instead. The sample-*
		# modules are never published.
		staging_version=v0.${kube_version#v1.}
		gomod=$(go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
		sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod" | grep -v '^k8s\.io/sample-' |
			while read -r m; do
				go mod edit -replace "$m=$m@$staging_version"
			done
		go get "k8s.io/kubernetes/cmd/kube-apiserver@$kube_version"
		# Stamped and stripped as Kubernetes' own release build does it: the
		# version on /version, no symbol table or DWARF (a third of the
		# size; Go's tracebacks do not need them).
		v=k8s.io/component-base/version
		minor=${kube_version#v1.}
		minor=${minor%%.*}
		go build -trimpath -o "$work/kube-apiserver" \
			-ldflags "-s -w -X $v.gitVersion=$kube_version -X $v.gitMajor=1 -X $v.gitMinor=$minor" \
			k8s.io/kubernetes/cmd/kube-apiserver
	)
	mkdir -p "$(dirname "$apiserver")"
	mv "$work/kube-apiserver" "$apiserver"
	echo "install-kube: built kube-apiserver $kube_version into $apiserver in ${SECONDS}s"
fi

#!/bin/sh
# ship-stripped.sh: build a Go program, upload its debug info to corepipe's
# symbol store, strip it, and leave the stripped binary to ship. A crash of
# the shipped binary then gets a full report: the analyzer finds the debug
# file by the build IDs, which objcopy keeps.
#
#   COREPIPE_SERVER=https://crashes.example.com COREPIPE_TOKEN=… \
#     scripts/ship-stripped.sh -o bin/server ./cmd/server [go build flags…]
#
# The token needs the debugger role. The debug file is kept beside the
# binary (OUT.debug) unless --no-keep-debug. Environment: GO (go), OBJCOPY
# (objcopy), COREPIPE (corepipe: the CLI that uploads). Never build with
# -ldflags="-s -w": that changes the build IDs, and no debug file can match.
set -eu

usage() {
	echo "usage: $0 -o OUT [--no-keep-debug] PACKAGE [go build flags...]" >&2
	exit 2
}

out= keep=1
while [ $# -gt 0 ]; do
	case $1 in
	-o) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
	--no-keep-debug) keep=; shift ;;
	-h | --help) usage ;;
	*) break ;;
	esac
done
[ -n "$out" ] && [ $# -ge 1 ] || usage
pkg=$1
shift

GO=${GO:-go} OBJCOPY=${OBJCOPY:-objcopy} COREPIPE=${COREPIPE:-corepipe}
if [ -z "${COREPIPE_SERVER:-}" ]; then
	echo "$0: COREPIPE_SERVER is not set: where should the symbols go?" >&2
	exit 2
fi
for arg in "$@"; do
	case $arg in
	*-ldflags*-s* | *-ldflags*-w*)
		echo "$0: warning: $arg: -s or -w changes the build IDs; corepipe symbols upload will refuse the build" >&2 ;;
	esac
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$GO" build -o "$tmp/prog" "$@" "$pkg"
"$OBJCOPY" --only-keep-debug "$tmp/prog" "$tmp/prog.debug"
# Upload before stripping: a build whose symbols did not reach the store
# must not ship as if they had.
"$COREPIPE" symbols upload --server "$COREPIPE_SERVER" "$tmp/prog.debug"
"$OBJCOPY" --strip-all "$tmp/prog" "$tmp/stripped"
"$COREPIPE" symbols check --server "$COREPIPE_SERVER" "$tmp/stripped"

mkdir -p "$(dirname "$out")"
mv "$tmp/stripped" "$out"
if [ -n "$keep" ]; then
	mv "$tmp/prog.debug" "$out.debug"
fi
echo "$0: $out is stripped; its debug info is in corepipe's symbol store"

package api

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
)

// referenceScript runs elfutils' debuginfod on a directory and asks it the
// given paths, each answer's status, headers and body into files. elfutils
// 0.188 has no listen address: the script runs in a network namespace of its
// own (unshare -n), whose loopback is all it can reach or be reached on.
const referenceScript = `set -e
dir=$1 out=$2
shift 2
ip link set lo up
debuginfod -F "$dir" -p 8002 -d "$out/db.sqlite" >"$out/server.log" 2>&1 &
pid=$!
trap 'kill $pid' EXIT
for i in $(seq 200); do
	case $(curl -s http://127.0.0.1:8002/metrics) in
	*'thread_work_total{role="traverse"} 1'*) break ;;
	esac
	sleep 0.05
done
# The scan that follows the traversal indexes the files.
for i in $(seq 200); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:8002$1")" = 200 ] && break
	sleep 0.05
done
n=0
for p in "$@"; do
	curl -s -D "$out/$n.headers" -o "$out/$n.body" -w '%{http_code}' "http://127.0.0.1:8002$p" >"$out/$n.status"
	n=$((n + 1))
done
`

// TestDebuginfodLikeElfutils serves one split build from elfutils' own
// debuginfod and from the API, and wants the same answers: status, size and
// file headers, and bytes.
func TestDebuginfodLikeElfutils(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: unshare -n needs root")
	}
	for _, tool := range []string{"debuginfod", "unshare", "curl", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s is not installed (scripts/install-tools.sh installs Debian's debuginfod package)", tool)
		}
	}
	b := newDebugBuild(t)
	dir := t.TempDir()
	for src, dst := range map[string]string{b.debug: "prog.debug", b.shipped: "prog"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	paths := []string{
		"/buildid/" + b.id + "/debuginfo",
		"/buildid/" + b.id + "/executable",
		"/buildid/" + b.id + "/section/.debug_info",
		"/buildid/" + b.id + "/section/.debug_line",
		"/buildid/" + strings.Repeat("ab", 20) + "/debuginfo",
	}
	out := t.TempDir()
	cmd := exec.Command("unshare", append([]string{"-n", "sh", "-c", referenceScript, "sh", dir, out}, paths...)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(out, "server.log"))
		t.Fatalf("reference debuginfod: %v\n%s\n%s", err, msg, log)
	}

	e := newEnv(t)
	if resp, body := e.upload("", b.id, filepath.Join(dir, "prog.debug")); resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %s: %s", resp.Status, body)
	}
	// The stripped program is in the store as the agent captures it.
	shipped, _ := os.ReadFile(b.shipped)
	e.put(corepipe.ExecutableKey(b.id), shipped)

	for i, p := range paths {
		ref := func(ext string) []byte {
			data, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%d.%s", i, ext)))
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
		resp, body := e.get(p)
		if want := string(ref("status")); fmt.Sprint(resp.StatusCode) != want {
			t.Errorf("%s: status %d, elfutils %s", p, resp.StatusCode, want)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			continue
		}
		if !bytes.Equal(body, ref("body")) {
			t.Errorf("%s: %d bytes differ from elfutils' %d", p, len(body), len(ref("body")))
		}
		refHeaders, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(ref("headers"))), nil)
		if err != nil {
			t.Fatal(err)
		}
		headers := []string{"X-Debuginfod-Size"}
		if !strings.HasSuffix(p, "/executable") {
			// A captured executable is stored under its build ID, not
			// its file name.
			headers = append(headers, "X-Debuginfod-File")
		}
		for _, h := range headers {
			if got, want := resp.Header.Get(h), refHeaders.Header.Get(h); got != want {
				t.Errorf("%s: %s %q, elfutils %q", p, h, got, want)
			}
		}
	}
}

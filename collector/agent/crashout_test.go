package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/gotrace"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

type records struct {
	mu  sync.Mutex
	got []*corepipe.Crash
	err error
}

func (r *records) ShipRecord(_ context.Context, c *corepipe.Crash) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.got = append(r.got, c)
	return nil
}

// runService runs the service with its crash directory, as a pod's
// container would (downward-API variables, GOTRACEBACK unset), and returns
// what the runtime printed on stderr.
func runService(t *testing.T, dir string, wrap []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(wrap[0], append(wrap[1:], args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "COREPIPE_CRASH_DIR=" + dir,
		"POD_NAME=web-7d9f", "POD_NAMESPACE=shop", "POD_UID=0b8c", "CONTAINER_NAME=app", "NODE_NAME=n1"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run()
	return stderr.String()
}

func collect(t *testing.T, dir string) (*CrashOutputs, *records, *fs.Store) {
	t.Helper()
	blobs, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec := &records{}
	return &CrashOutputs{Dir: dir, Node: "n1", Blobs: blobs, Recorder: rec}, rec, blobs
}

// TestCrashOutput crashes a service that imports crashout — as an ordinary
// process, and as PID 1 of a PID namespace, where no core is ever dumped —
// and collects its file into a crash whose excerpt says what the runtime
// printed.
func TestCrashOutput(t *testing.T) {
	exe := crashtest.BuildPackage(t, "crashout/testdata/service")
	wraps := map[string][]string{"process": {exe}}
	if os.Geteuid() == 0 {
		wraps["pid 1"] = []string{"unshare", "--pid", "--fork", "--mount-proc", exe}
	}
	for name, wrap := range wraps {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			stderr := runService(t, dir, wrap, "panic")
			co, rec, blobs := collect(t, dir)
			n, err := co.Scan(context.Background())
			if err != nil || n != 1 || len(rec.got) != 1 {
				t.Fatalf("scan shipped %d (%v), recorded %d", n, err, len(rec.got))
			}
			c := rec.got[0]
			if c.Log == nil || c.Log.Source != corepipe.SourceCrashOutput || c.Container == nil || c.Container.Pod != "web-7d9f" ||
				c.Container.Namespace != "shop" || c.Go == nil || c.Go.MainModule != "github.com/corepipe/corepipe" || c.Arch == "" {
				t.Fatalf("crash %+v log %+v container %+v go %+v", c, c.Log, c.Container, c.Go)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
				t.Errorf("collected file left behind: %v", left)
			}
			text := blobtest.Read(t, blobs, c.Log.Key)
			want, err := gotraceback.Parse(stderr)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			r, err := gotrace.Parse(string(text), gotrace.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if diffs := gotraceback.Compare(r, want); len(diffs) > 0 {
				t.Errorf("crash output disagrees with the runtime's stderr:\n%s\n%s", strings.Join(diffs, "\n"), text)
			}
			if again, _ := co.Scan(context.Background()); again != 0 {
				t.Errorf("a second scan shipped %d", again)
			}
		})
	}
}

// TestCrashOutputLifecycle: a live process's file is left alone, a clean
// exit's is removed, a file that failed to ship stays for the next scan,
// and links and foreign files are not followed or shipped.
func TestCrashOutputLifecycle(t *testing.T) {
	exe := crashtest.BuildPackage(t, "crashout/testdata/service")
	dir := t.TempDir()
	cmd := exec.Command(exe, "wait")
	cmd.Env = []string{"COREPIPE_CRASH_DIR=" + dir}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(dir, "*.crash")); len(m) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the service wrote no crash file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	co, rec, _ := collect(t, dir)
	co.Scan(context.Background())
	if m, _ := filepath.Glob(filepath.Join(dir, "*.crash")); len(m) != 1 || len(rec.got) != 0 {
		t.Fatalf("a live process's file was taken: left %v, recorded %d", m, len(rec.got))
	}
	cmd.Process.Kill()
	cmd.Wait()
	co.Scan(context.Background())
	if m, _ := filepath.Glob(filepath.Join(dir, "*.crash")); len(m) != 0 || len(rec.got) != 0 {
		t.Fatalf("a killed process without a traceback: left %v, recorded %d", m, len(rec.got))
	}

	runService(t, dir, []string{exe}, "exit")
	co.Scan(context.Background())
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("a clean exit's file was left: %v", m)
	}

	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("# corepipe-crashout/1 {}\npanic: secret\n\ngoroutine 1 [running]:\nmain.main()\n\t/x.go:1 +0x1\n"), 0o600)
	os.Symlink(secret, filepath.Join(dir, "evil.crash"))
	os.WriteFile(filepath.Join(dir, "garbage.crash"), bytes.Repeat([]byte{0xff}, 1<<20), 0o600)
	runService(t, dir, []string{exe}, "panic")
	rec.err = errors.New("queue down")
	if n, err := co.Scan(context.Background()); n != 0 || err == nil {
		t.Fatalf("scan with the queue down: shipped %d, err %v", n, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.crash")); len(m) != 1 {
		t.Fatalf("after a failed ship: %v, want the crash's file kept and the others removed", m)
	}
	rec.err = nil
	if n, err := co.Scan(context.Background()); n != 1 || err != nil {
		t.Fatalf("retry: shipped %d, err %v", n, err)
	}
	if _, err := os.Stat(secret); err != nil || strings.Contains(rec.got[0].Log.Path, "secret") {
		t.Errorf("the link was followed or its target touched: %v %+v", err, rec.got[0].Log)
	}
}

// TestCrashOutputOfThrow: a runtime throw's crash file has no "fatal
// error:" line (golang/go#76859); its stacks are still all there.
func TestCrashOutputOfThrow(t *testing.T) {
	exe := crashtest.BuildPackage(t, "crashout/testdata/service")
	dir := t.TempDir()
	runService(t, dir, []string{exe}, "mapwrites")
	co, rec, blobs := collect(t, dir)
	if n, err := co.Scan(context.Background()); n != 1 || err != nil {
		t.Fatalf("scan: %d, %v", n, err)
	}
	text := blobtest.Read(t, blobs, rec.got[0].Log.Key)
	r, err := gotrace.Parse(string(text), gotrace.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Panic != nil || r.CrashingGoroutine == 0 {
		t.Errorf("panic %+v crashing %d: want no message and the crashing goroutine", r.Panic, r.CrashingGoroutine)
	}
}

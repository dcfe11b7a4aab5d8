package miniotest_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/corepipe/corepipe/internal/testkit/miniotest"
	"github.com/corepipe/corepipe/internal/testkit/netns"
)

func live(s *miniotest.Server) bool {
	resp, err := http.Get("http://" + s.Endpoint() + "/minio/health/live")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func TestStopRestart(t *testing.T) {
	s := miniotest.Start(t)
	if !live(s) {
		t.Fatal("not live after Start")
	}
	s.Stop()
	if live(s) {
		t.Fatal("live after Stop")
	}
	s.Stop()
	s.Restart()
	if !live(s) {
		t.Fatal("not live after Restart")
	}
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("COREPIPE_MINIO", "/nonexistent/minio")
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		miniotest.Start(ft)
	}()
	<-done
	if !strings.Contains(ft.msg, "scripts/install-minio.sh") {
		t.Fatalf("Start with a missing binary failed with %q, want a hint to run scripts/install-minio.sh", ft.msg)
	}
}

// fatalRecorder records Fatalf instead of failing the real test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// An erasure set of four behind its front keeps taking writes and serving
// reads with one member killed, and the member rejoins when restarted.
func TestErasureSetMemberDown(t *testing.T) {
	hosts := []string{"10.250.0.1", "10.250.0.2", "10.250.0.3", "10.250.0.4"}
	if !netns.Enter(t, hosts) {
		return
	}
	set := miniotest.StartErasureSet(t, hosts)
	front := miniotest.NewFront(t, set)
	ak, sk := set[0].Credentials()
	c, err := minio.New(front.Endpoint(), &minio.Options{Creds: credentials.NewStaticV4(ak, sk, ""), MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := c.MakeBucket(ctx, "set", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	put := func(name string) {
		t.Helper()
		body := strings.Repeat(name, 1<<16)
		if _, err := c.PutObject(ctx, "set", name, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	get := func(name string) {
		t.Helper()
		o, err := c.GetObject(ctx, "set", name, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		defer o.Close()
		b, err := io.ReadAll(o)
		if err != nil || string(b) != strings.Repeat(name, 1<<16) {
			t.Fatalf("get %s: %d bytes, %v", name, len(b), err)
		}
	}
	put("before")
	set[1].Stop()
	// Until the others notice the member gone, a write may be refused as
	// "unwritable" (503 SlowDown), which clients retry, as the agent does;
	// after that, writes must go through.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		body := strings.Repeat("during", 1<<16)
		_, err := c.PutObject(ctx, "set", "during", strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("put with a member down: %v", err)
		}
	}
	get("before")
	get("during")
	set[1].Restart()
	put("after")
	get("during")
}

package miniotest_test

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/corepipe/corepipe/internal/testkit/miniotest"
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

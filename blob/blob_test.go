package blob_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob"
	"github.com/corepipe/corepipe/internal/testkit/miniotest"
)

func roundTrip(t *testing.T, s corepipe.BlobStore) {
	t.Helper()
	if err := s.Put(t.Context(), "reports/x.json", strings.NewReader("{}"), 2); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(t.Context(), "reports/x.json")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || string(b) != "{}" {
		t.Errorf("Get = %q, %v", b, err)
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	s, err := blob.Open(t.Context(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s)
	if _, err := os.Stat(filepath.Join(dir, "reports", "x.json")); err != nil {
		t.Errorf("object not under the URL's directory: %v", err)
	}
}

// Production passes only a URL; the credentials come from the environment.
func TestOpenS3FromEnvironment(t *testing.T) {
	srv := miniotest.Start(t)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	s, err := blob.Open(t.Context(), srv.URL("from-env")+"&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s)
}

func TestOpenInvalid(t *testing.T) {
	for _, raw := range []string{
		"",
		"/var/lib/corepipe",
		"file://relative/path",
		"file:relative",
		"file:///abs?x=1",
		"http://example.com/bucket",
		"gs://bucket",
		"s3://user:hunter2@bucket/",
		"%zz",
	} {
		_, err := blob.Open(t.Context(), raw)
		if !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("Open(%q) = %v, want ErrInvalid", raw, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) error repeats the password: %v", raw, err)
		}
	}
}

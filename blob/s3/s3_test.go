package s3_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/s3"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
	"github.com/corepipe/corepipe/internal/testkit/miniotest"
)

var buckets atomic.Int64

// open opens a store on a new bucket of srv, under a prefix so that every
// test also checks that the prefix is added and stripped.
func open(t *testing.T, srv *miniotest.Server) *s3.Store {
	t.Helper()
	bucket := fmt.Sprintf("corepipe-test-%d", buckets.Add(1))
	u, err := url.Parse(srv.URL(bucket))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/some/prefix"
	s, err := s3.Open(t.Context(), u, s3.WithCredentials(srv.Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := miniotest.Start(t)
	blobtest.Run(t, func(t *testing.T) corepipe.BlobStore { return open(t, srv) })
}

// Stores on prefixes of one bucket see only their own keys, even when one
// prefix is a string prefix of the other.
func TestPrefixIsolation(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	var stores []*s3.Store
	for _, prefix := range []string{"", "one", "one-two"} {
		u, _ := url.Parse(srv.URL("shared"))
		u.Path = prefix
		s, err := s3.Open(t.Context(), u, s3.WithCredentials(srv.Credentials()))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(t.Context(), "k", strings.NewReader(prefix), int64(len(prefix))); err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	for i, want := range [][]string{{"k", "one-two/k", "one/k"}, {"k"}, {"k"}} {
		var got []string
		if err := stores[i].List(t.Context(), "", func(k string) error { got = append(got, k); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("store %d: List = %q, want %q", i, got, want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, raw := range []string{
		"s3:///prefix",
		"s3://b/",
		"s3://Bad_Bucket/",
		"s3://bucket/p?endpont=127.0.0.1:1",
		"s3://bucket/p?endpoint=127.0.0.1:1&insecure=yes",
		"s3://user:secret@bucket/",
		"s3://bucket/a/../b?endpoint=127.0.0.1:1",
		"s3://bucket?endpoint=http://127.0.0.1:1/path",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s3.Open(t.Context(), u)
		if !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("Open(%s) = %v, want ErrInvalid", u.Redacted(), err)
		}
		if strings.Contains(fmt.Sprint(err), "secret") {
			t.Errorf("Open(%s) error repeats the password: %v", u.Redacted(), err)
		}
	}
}

// wantUnavailable checks that err says the store is unavailable, where, and
// about which key, and that it came back within the caller's deadline.
func wantUnavailable(t *testing.T, op string, err error, srv *miniotest.Server, key string) {
	t.Helper()
	if !errors.Is(err, corepipe.ErrUnavailable) {
		t.Errorf("%s with MinIO down = %v, want ErrUnavailable", op, err)
		return
	}
	if msg := err.Error(); !strings.Contains(msg, srv.Endpoint()) || !strings.Contains(msg, key) || strings.Contains(msg, "\n") {
		t.Errorf("%s error %q should be one line naming the endpoint and the key", op, msg)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	s := open(t, srv)
	if err := s.Put(t.Context(), "before", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	// minio-go retries with backoff for several seconds; the caller's
	// deadline must bound that.
	const timeout = 700 * time.Millisecond
	for _, call := range []struct {
		op, key string
		fn      func(ctx context.Context, key string) error
	}{
		{"Put", "during", func(ctx context.Context, key string) error {
			return s.Put(ctx, key, strings.NewReader("x"), 1)
		}},
		{"Get", "before", func(ctx context.Context, key string) error {
			rc, err := s.Get(ctx, key)
			if err == nil {
				rc.Close()
			}
			return err
		}},
		{"Stat", "before", func(ctx context.Context, key string) error {
			_, err := s.Stat(ctx, key)
			return err
		}},
		{"List", "some/prefix", func(ctx context.Context, key string) error {
			return s.List(ctx, key, func(string) error { return nil })
		}},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		start := time.Now()
		err := call.fn(ctx, call.key)
		cancel()
		wantUnavailable(t, call.op, err, srv, call.key)
		if d := time.Since(start); d > timeout+time.Second {
			t.Errorf("%s with MinIO down took %v, past its %v deadline", call.op, d, timeout)
		}
	}

	srv.Restart()
	if err := s.Put(t.Context(), "after", strings.NewReader("y"), 1); err != nil {
		t.Fatalf("Put after Restart: %v", err)
	}
	rc, err := s.Get(t.Context(), "before")
	if err != nil {
		t.Fatalf("Get after Restart: %v", err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || string(b) != "x" {
		t.Errorf("Get after Restart = %q, %v", b, err)
	}
}

// MinIO dies halfway through a multipart upload of unknown size: the upload
// fails as unavailable, leaves no object, and a retry after the restart works.
func TestUnavailableMidUpload(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	s := open(t, srv)
	const key, size = "cores/mid/core.zst", 40 << 20

	r := &killAfter{r: io.LimitReader(zeros{}, size), n: 20 << 20, kill: srv.Stop}
	const timeout = time.Second
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	err := s.Put(ctx, key, r, -1)
	wantUnavailable(t, "Put", err, srv, key)
	// minio-go spends up to its retry budget (about 5 s) trying to abort the
	// multipart upload, past the caller's deadline.
	if d := time.Since(start); d > timeout+10*time.Second {
		t.Errorf("Put with MinIO killed mid-upload took %v", d)
	}

	srv.Restart()
	if _, err := s.Stat(t.Context(), key); !errors.Is(err, corepipe.ErrNotFound) {
		t.Errorf("Stat after a failed upload = %v, want ErrNotFound", err)
	}
	if err := s.Put(t.Context(), key, io.LimitReader(zeros{}, size), -1); err != nil {
		t.Fatalf("Put after Restart: %v", err)
	}
	if n, err := s.Stat(t.Context(), key); err != nil || n != size {
		t.Errorf("Stat = %d, %v; want %d", n, err, size)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// killAfter calls kill once n bytes have been read from r.
type killAfter struct {
	r    io.Reader
	n    int64
	kill func()
}

func (k *killAfter) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	k.n -= int64(n)
	if k.n <= 0 && k.kill != nil {
		k.kill()
		k.kill = nil
	}
	return n, err
}

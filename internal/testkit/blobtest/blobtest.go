// Package blobtest is the conformance suite of corepipe.BlobStore: every
// adapter runs it, so code written against the filesystem store in
// development behaves the same on S3 in production.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/corepipe/corepipe"
)

// StreamSize is the size of the object the streaming test puts with size -1:
// larger than one S3 part, so multipart uploads are exercised.
const StreamSize = 40 << 20

// Run runs the suite. newStore must return an empty store, a fresh one for
// every call, and clean it up with t.Cleanup. Call Run from a test that is
// not parallel: the streaming test measures the process's allocations.
func Run(t *testing.T, newStore func(t *testing.T) corepipe.BlobStore) {
	// Not parallel, and first: it measures the allocations of one upload.
	t.Run("StreamUnknownSize", func(t *testing.T) { testStream(t, newStore(t)) })

	tests := []struct {
		name string
		fn   func(*testing.T, corepipe.BlobStore)
	}{
		{"RoundTrip", testRoundTrip},
		{"Empty", testEmpty},
		{"Overwrite", testOverwrite},
		{"NotFound", testNotFound},
		{"ShortReader", testShortReader},
		{"Canceled", testCanceled},
		{"List", testList},
		{"ListStops", testListStops},
		{"InvalidKeys", testInvalidKeys},
		{"ConcurrentPuts", testConcurrentPuts},
		{"Delete", testDelete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

func put(t *testing.T, s corepipe.BlobStore, key, data string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, s corepipe.BlobStore, key string) string {
	t.Helper()
	return string(Read(t, s, key))
}

func list(t *testing.T, s corepipe.BlobStore, prefix string) []string {
	t.Helper()
	keys := []string{}
	err := s.List(t.Context(), prefix, func(key string) error {
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

func wantNotFound(t *testing.T, op, key string, err error) {
	t.Helper()
	if !errors.Is(err, corepipe.ErrNotFound) {
		t.Errorf("%s(%q) = %v, want ErrNotFound", op, key, err)
		return
	}
	if !strings.Contains(err.Error(), key) {
		t.Errorf("%s(%q) error %q does not name the key", op, key, err)
	}
}

func testRoundTrip(t *testing.T, s corepipe.BlobStore) {
	for _, key := range []string{
		"reports/01JABCDEFGHJKMNPQRSTVWXYZ0.json",
		"cores/2026/02/12/node-1/01JABCDEFGHJKMNPQRSTVWXYZ0/core.zst",
		"executables/go-build-id_with.dots",
		"top",
	} {
		data := "contents of " + key
		put(t, s, key, data)
		if got := get(t, s, key); got != data {
			t.Errorf("Get(%q) = %q, want %q", key, got, data)
		}
		size, err := s.Stat(t.Context(), key)
		if err != nil || size != int64(len(data)) {
			t.Errorf("Stat(%q) = %d, %v; want %d", key, size, err, len(data))
		}
	}
	// An unknown size on a small object takes another path in some stores.
	const key, data = "small/unknown-size", "no length given"
	if err := s.Put(t.Context(), key, strings.NewReader(data), -1); err != nil {
		t.Fatalf("Put(%q, -1): %v", key, err)
	}
	if got := get(t, s, key); got != data {
		t.Errorf("Get(%q) = %q, want %q", key, got, data)
	}
}

func testEmpty(t *testing.T, s corepipe.BlobStore) {
	for _, size := range []int64{0, -1} {
		key := fmt.Sprintf("empty/size%d", size)
		if err := s.Put(t.Context(), key, strings.NewReader(""), size); err != nil {
			t.Fatalf("Put(%q, %d): %v", key, size, err)
		}
		if n, err := s.Stat(t.Context(), key); err != nil || n != 0 {
			t.Errorf("Stat(%q) = %d, %v; want 0", key, n, err)
		}
		if got := get(t, s, key); got != "" {
			t.Errorf("Get(%q) = %q, want empty", key, got)
		}
	}
}

func testOverwrite(t *testing.T, s corepipe.BlobStore) {
	const key = "reports/same.json"
	put(t, s, key, "first")
	put(t, s, key, "first")
	if keys := list(t, s, ""); !slices.Equal(keys, []string{key}) {
		t.Errorf("after putting %q twice List = %q, want one object", key, keys)
	}
	put(t, s, key, "second, longer")
	if got := get(t, s, key); got != "second, longer" {
		t.Errorf("after overwrite Get = %q", got)
	}
	if n, err := s.Stat(t.Context(), key); err != nil || n != int64(len("second, longer")) {
		t.Errorf("after overwrite Stat = %d, %v", n, err)
	}
	if keys := list(t, s, ""); !slices.Equal(keys, []string{key}) {
		t.Errorf("after overwrite List = %q, want one object", keys)
	}
}

func testNotFound(t *testing.T, s corepipe.BlobStore) {
	put(t, s, "dir/object", "x")
	// "dir" is a directory in some stores and a mere prefix in others:
	// either way there is no object there.
	for _, key := range []string{"missing", "dir", "dir/missing", "dir/object/below", "nodir/missing"} {
		rc, err := s.Get(t.Context(), key)
		if err == nil {
			rc.Close()
		}
		wantNotFound(t, "Get", key, err)
		_, err = s.Stat(t.Context(), key)
		wantNotFound(t, "Stat", key, err)
	}
}

func testShortReader(t *testing.T, s corepipe.BlobStore) {
	const key = "short"
	err := s.Put(t.Context(), key, strings.NewReader("12345"), 10)
	if err == nil {
		t.Fatalf("Put of 5 bytes with size 10 succeeded")
	}
	_, err = s.Stat(t.Context(), key)
	wantNotFound(t, "Stat after a short Put", key, err)
}

func testCanceled(t *testing.T, s corepipe.BlobStore) {
	const key = "canceled"
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Put(ctx, key, strings.NewReader("data"), 4)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context = %v, want context.Canceled", err)
	}
	_, err = s.Stat(t.Context(), key)
	wantNotFound(t, "Stat after a canceled Put", key, err)
}

// listKeys holds the traps of lexical order: '-' < '.' < '/' < '0', so a
// directory "a" sorts after "a.txt" once its keys are spelt out.
var listKeys = []string{
	"a-b/c",
	"a.txt",
	"a/b",
	"a/c/d",
	"a0",
	"b/x/y",
	"reports/01.json",
	"reports/02.json",
	"reportsX",
}

func testList(t *testing.T, s corepipe.BlobStore) {
	if keys := list(t, s, ""); len(keys) != 0 {
		t.Errorf("List of an empty store = %q", keys)
	}
	// Put out of order so that the store, not the caller, sorts.
	for _, i := range rand.Perm(len(listKeys)) {
		put(t, s, listKeys[i], listKeys[i])
	}
	for _, prefix := range []string{
		"", "a", "a/", "a/c", "a/c/", "a.txt", "a.txt/", "b/x/", "reports", "reports/", "reports/0",
		"zzz", "nope/deeper/", "a/c/d/e",
	} {
		want := []string{}
		for _, k := range listKeys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if got := list(t, s, prefix); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
	for _, prefix := range []string{"/abs", "../", "a/../b", "a\\b"} {
		err := s.List(t.Context(), prefix, func(string) error { return nil })
		if !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("List(%q) = %v, want ErrInvalid", prefix, err)
		}
	}
}

func testListStops(t *testing.T, s corepipe.BlobStore) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("k/%d", i), "x")
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(t.Context(), "k/", func(string) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Errorf("List with fn failing on the 2nd key = %v after %d calls, want the error after 2", err, calls)
	}
}

func testInvalidKeys(t *testing.T, s corepipe.BlobStore) {
	for _, key := range []string{
		"", "/abs", "..", ".", "../escape", "a/../../b", "a/./b", "a//b", "a/", "a\\b", "a\x00b", "\xff",
		strings.Repeat("k", 1025),
	} {
		err := s.Put(t.Context(), key, strings.NewReader("x"), 1)
		if !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("Put(%q) = %v, want ErrInvalid", key, err)
		}
		rc, err := s.Get(t.Context(), key)
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("Get(%q) = %v, want ErrInvalid", key, err)
		}
		if _, err := s.Stat(t.Context(), key); !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("Stat(%q) = %v, want ErrInvalid", key, err)
		}
	}
	if keys := list(t, s, ""); len(keys) != 0 {
		t.Errorf("invalid puts left objects: %q", keys)
	}
}

func testConcurrentPuts(t *testing.T, s corepipe.BlobStore) {
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			data := strings.Repeat(fmt.Sprint(i), 1000+i)
			errs[i] = s.Put(t.Context(), fmt.Sprintf("concurrent/%02d", i), strings.NewReader(data), -1)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	keys := list(t, s, "concurrent/")
	if len(keys) != n {
		t.Fatalf("List after %d concurrent puts = %q", n, keys)
	}
	for i, key := range keys {
		if got, want := get(t, s, key), strings.Repeat(fmt.Sprint(i), 1000+i); got != want {
			t.Errorf("Get(%q) = %d bytes, want %d", key, len(got), len(want))
		}
	}
}

// testStream puts StreamSize generated bytes with size -1 and reads them
// back, never holding the object: a store that buffers whole objects would
// fail on a multi-GiB core in production and fails the allocation bound here.
func testStream(t *testing.T, s corepipe.BlobStore) {
	const key = "cores/stream/core.zst"
	sum := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), StreamSize), sum)

	allocated := measureAlloc(func() {
		if err := s.Put(t.Context(), key, src, -1); err != nil {
			t.Fatalf("Put(%q, -1): %v", key, err)
		}
	})
	// S3 uploads of unknown size buffer one part (16 MiB) at a time; a
	// store holding the whole object allocates at least StreamSize.
	if limit := uint64(StreamSize * 3 / 4); allocated > limit {
		t.Errorf("Put of %d MiB allocated %d MiB, want under %d MiB: is it buffering the object?",
			StreamSize>>20, allocated>>20, limit>>20)
	}
	want := sum.Sum(nil)

	if n, err := s.Stat(t.Context(), key); err != nil || n != StreamSize {
		t.Errorf("Stat(%q) = %d, %v; want %d", key, n, err, StreamSize)
	}

	var got []byte
	allocated = measureAlloc(func() {
		rc, err := s.Get(t.Context(), key)
		if err != nil {
			t.Fatalf("Get(%q): %v", key, err)
		}
		defer rc.Close()
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			t.Fatalf("Get(%q): read: %v", key, err)
		}
		got = h.Sum(nil)
	})
	if !bytes.Equal(got, want) {
		t.Errorf("Get(%q) returned other bytes than were put", key)
	}
	if limit := uint64(StreamSize / 4); allocated > limit {
		t.Errorf("Get of %d MiB allocated %d MiB, want under %d MiB: is it buffering the object?",
			StreamSize>>20, allocated>>20, limit>>20)
	}
}

// measureAlloc returns how many bytes fn allocated, from the whole process:
// callers run it while nothing else in the test binary is busy.
func measureAlloc(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func testDelete(t *testing.T, s corepipe.BlobStore) {
	d, ok := s.(corepipe.BlobDeleter)
	if !ok {
		t.Skip("the store does not delete")
	}
	put(t, s, "a/kept", "1")
	put(t, s, "a/gone", "2")
	if err := d.Delete(t.Context(), "a/gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Stat(t.Context(), "a/gone")
	wantNotFound(t, "Stat after Delete", "a/gone", err)
	if got := list(t, s, "a/"); !slices.Equal(got, []string{"a/kept"}) {
		t.Errorf("List after Delete = %q, want [a/kept]", got)
	}
	// Again, and a key that never was: both are done already.
	for _, key := range []string{"a/gone", "never"} {
		if err := d.Delete(t.Context(), key); err != nil {
			t.Errorf("Delete(%q) of a missing key: %v", key, err)
		}
	}
	if err := d.Delete(t.Context(), "../escape"); !errors.Is(err, corepipe.ErrInvalid) {
		t.Errorf("Delete(../escape) = %v, want ErrInvalid", err)
	}
}

package blobtest

import (
	"context"
	"io"
	"testing"

	"github.com/corepipe/corepipe"
)

// Read returns the object at key, failing the test if it cannot be got or
// read whole.
func Read(t testing.TB, s corepipe.BlobStore, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	return b
}

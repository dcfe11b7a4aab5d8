package blobkey_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/internal/blobkey"
)

func TestCheck(t *testing.T) {
	for _, key := range []string{
		"reports/01JABCDEFGHJKMNPQRSTVWXYZ0.json",
		"cores/2026/02/12/node-1/01JABCDEFGHJKMNPQRSTVWXYZ0/core.zst",
		"a", ".hidden", "a/..b", "a/b..", "ünïcode", strings.Repeat("k", 1024),
	} {
		if err := blobkey.Check(key); err != nil {
			t.Errorf("Check(%q) = %v, want nil", key, err)
		}
	}
	for _, key := range []string{
		"", "/abs", ".", "..", "../x", "a/..", "a/./b", "a//b", "a/", "a\\b", "a\x00b", "\xff",
		strings.Repeat("k", 1025),
	} {
		if err := blobkey.Check(key); !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("Check(%q) = %v, want ErrInvalid", key, err)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, prefix := range []string{"", "reports/", "reports", "cores/2026/0", "a/.", "a/..", "a/b/"} {
		if err := blobkey.CheckPrefix(prefix); err != nil {
			t.Errorf("CheckPrefix(%q) = %v, want nil", prefix, err)
		}
	}
	for _, prefix := range []string{"/", "/abs", "../", "a/../b", "a//", "./a", "a\\", "a\x00"} {
		if err := blobkey.CheckPrefix(prefix); !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("CheckPrefix(%q) = %v, want ErrInvalid", prefix, err)
		}
	}
}

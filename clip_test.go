package corepipe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"", 5, ""},
		{"short", 5, "short"},
		{"longer", 5, "longe…"},
		// A cut inside a multi-byte character keeps the character whole
		// (a byte cut left "caf\xc3", which a terminal or JSON encoder
		// turns into U+FFFD).
		{"café au lait", 4, "café…"},
		{"日本語のタイトル", 3, "日本語…"},
		{"日本", 5, "日本"},
		{"abc", 0, "a…"},
	} {
		got := Clip(c.s, c.n)
		if got != c.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q is not valid UTF-8", c.s, c.n, got)
		}
	}
	// Bounded whatever the input claims.
	if got := Clip(strings.Repeat("€", 1<<20), 64); len(got) > 4*64+3 {
		t.Errorf("Clip of 1 Mi characters to 64 is %d bytes", len(got))
	}
}

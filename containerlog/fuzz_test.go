package containerlog

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzDecode: any bytes decode into lines no longer than MaxLine, and the
// decoder ends.
func FuzzDecode(f *testing.F) {
	f.Add("2026-12-01T10:00:00.1Z stderr P abc\n2026-12-01T10:00:00.2Z stderr F def\n")
	f.Add(`{"log":"panic: x\n","stream":"stderr","time":"2026-12-01T10:00:00Z"}` + "\n")
	f.Add("plain\n\x00\xff\n")
	f.Fuzz(func(t *testing.T, in string) {
		d := NewDecoder(strings.NewReader(in), "")
		for n := 0; ; n++ {
			l, err := d.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Text) > MaxLine {
				t.Fatalf("line of %d bytes", len(l.Text))
			}
			if n > len(in)+1 {
				t.Fatalf("%d lines from %d bytes", n, len(in))
			}
		}
	})
}

package kernlog

import (
	"bytes"
	"os"
	"testing"
)

// BenchmarkParse reads a real serial console log, boot to panic.
func BenchmarkParse(b *testing.B) {
	log, err := os.ReadFile("testdata/qemu-sysrq-serial.log")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(log)); err != nil {
			b.Fatal(err)
		}
	}
}

package size

import (
	"flag"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "4096": 4096, "512M": 512 << 20, "2g": 2 << 30, "1K": 1024, "3T": 3 << 40,
		"64KiB": 64 << 10, "64KB": 64 << 10, "512Mi": 512 << 20, "100B": 100, "1P": 1 << 50,
		"1.5G": 3 << 29, "0.5K": 512, "1.1K": 1126, " 7M ": 7 << 20, "7E": 7 << 60,
	} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "M", "2X", "1.5", "1..5G", ".G", "1e3", "0x10", "1/2G", "99999999999T", "8E", "1 G", "G1", "IB", "2GiBB"} {
		if n, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", in, n)
		} else if !strings.Contains(err.Error(), in) {
			t.Errorf("Parse(%q): %v does not name the value", in, err)
		}
	}
}

func TestFormatParsesBack(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 4097: "4097", 1024: "1K", 1536 << 20: "1536M", 4 << 30: "4G", 1 << 62: "4E"} {
		got := Format(n)
		if got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
		if back, err := Parse(got); err != nil || back != n {
			t.Errorf("Parse(Format(%d)) = %d, %v", n, back, err)
		}
	}
}

// TestValue declares the same flag with both flag packages: the default is
// the field's value, and a bad value is refused with the syntax, once.
func TestValue(t *testing.T) {
	var a, b int64 = 4 << 30, 0
	std := flag.NewFlagSet("x", flag.ContinueOnError)
	std.Var((*Value)(&a), "max", "")
	pf := pflag.NewFlagSet("x", pflag.ContinueOnError)
	pf.Var((*Value)(&b), "max", "")
	if d := std.Lookup("max").DefValue; d != "4G" {
		t.Errorf("default shown as %q, want 4G", d)
	}
	if err := std.Parse([]string{"-max", "512M"}); err != nil || a != 512<<20 {
		t.Errorf("flag: %d, %v", a, err)
	}
	if err := pf.Parse([]string{"--max=1.5G"}); err != nil || b != 3<<29 {
		t.Errorf("pflag: %d, %v", b, err)
	}
	pf.SetOutput(new(strings.Builder))
	err := pf.Parse([]string{"--max", "2X"})
	if err == nil || strings.Count(err.Error(), "2X") != 1 || !strings.Contains(err.Error(), "512M") {
		t.Errorf("pflag with a bad size: %v", err)
	}
	if pf.Lookup("max").Value.Type() != "size" {
		t.Errorf("type %q", pf.Lookup("max").Value.Type())
	}
}

// FuzzParse: whatever is typed, Parse either refuses it or returns a
// non-negative count that Format writes back to the same count.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "512M", "1.5G", "64KiB", "7E", "8E", "1..5G", "-1", "0.0000001K"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("Parse(%q) = %d", s, n)
		}
		if back, err := Parse(Format(n)); err != nil || back != n {
			t.Fatalf("Parse(Format(%d)) = %d, %v", n, back, err)
		}
	})
}

// Package size reads and writes byte counts the way every corepipe flag
// takes them: plain bytes (4096) or a number with a binary unit (512M, 2G,
// 1.5G, 64KiB). It is the one parser of sizes, shared by the collector's
// command line and every size flag of corepipe.
package size

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// errSyntax says what a size looks like; flag errors print it after the
// value, so it does not repeat the value itself.
var errSyntax = errors.New("want a size like 512M or 2G")

var errRange = errors.New("too large for a byte count")

// units are binary whatever the spelling: K, KB, Ki and KiB all mean 1024,
// as in systemd's coredump.conf and the collector before this package.
// Kubernetes users write 512Mi and get what they mean; nobody sizing a core
// limit means 10^6.
var units = map[string]int64{
	"":  1,
	"B": 1,
	"K": 1 << 10,
	"M": 1 << 20,
	"G": 1 << 30,
	"T": 1 << 40,
	"P": 1 << 50,
	"E": 1 << 60,
}

// Parse reads a non-negative byte count. A fraction is allowed with a unit
// (1.5G) and rounds down to whole bytes.
func Parse(s string) (int64, error) {
	n, err := parse(s)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return n, nil
}

func parse(s string) (int64, error) {
	s = strings.TrimSpace(s)
	end := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end < 0 {
		end = len(s)
	}
	num, unit := s[:end], strings.ToUpper(s[end:])
	if u, ok := strings.CutSuffix(unit, "B"); ok && u != "" {
		unit = u
	}
	if u, ok := strings.CutSuffix(unit, "I"); ok && u != "" {
		unit = u
	}
	mult, ok := units[unit]
	if !ok || num == "" || num == "." || strings.Count(num, ".") > 1 || (mult == 1 && strings.Contains(num, ".")) {
		return 0, errSyntax
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, errSyntax
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, errRange
	}
	return n.Int64(), nil
}

// Format writes n in the largest unit that holds it exactly, so that what
// a flag's help shows as its default parses back to the same number.
func Format(n int64) string {
	for _, u := range []string{"E", "P", "T", "G", "M", "K"} {
		if m := units[u]; n != 0 && n%m == 0 {
			return fmt.Sprintf("%d%s", n/m, u)
		}
	}
	return fmt.Sprintf("%d", n)
}

// Value is a byte count as a flag: it is both a flag.Value and a
// pflag.Value. Declare one over an int64 field with
//
//	fs.Var((*size.Value)(&cfg.MaxCoreSize), "max-core-size", "…")
//
// and the field's value when declared is the flag's default.
type Value int64

func (v *Value) String() string { return Format(int64(*v)) }

// Set returns an error that does not repeat s: flag packages print the
// value beside it.
func (v *Value) Set(s string) error {
	n, err := parse(s)
	if err != nil {
		return err
	}
	*v = Value(n)
	return nil
}

// Type names the value in pflag's help ("--max-use size").
func (*Value) Type() string { return "size" }

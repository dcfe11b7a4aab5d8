package corepipe

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestEachRule(t *testing.T) {
	in := "# comment\n\n  a  b \n\t# indented comment\nc d e\nstop\nnever\n"
	var got []string
	stop := errors.New("stop")
	err := EachRule(strings.NewReader(in), func(n int, fields []string) error {
		got = append(got, strings.Join(append([]string{string(rune('0' + n))}, fields...), " "))
		if fields[0] == "stop" {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("err = %v, want fn's error", err)
	}
	if want := []string{"3 a b", "5 c d e", "6 stop"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules = %q, want %q", got, want)
	}
	long := strings.Repeat("x", 1<<20)
	if err := EachRule(strings.NewReader(long), func(int, []string) error { return nil }); err == nil {
		t.Error("a line over the scanner's limit read without error")
	}
}

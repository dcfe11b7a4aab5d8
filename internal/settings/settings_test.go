package settings

import (
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{
		{0, time.Second},
		{-time.Minute, time.Second},
		{time.Millisecond, time.Millisecond},
	} {
		v := c.in
		Default(&v, time.Second)
		if v != c.want {
			t.Errorf("Default(%v, 1s) = %v, want %v", c.in, v, c.want)
		}
	}
	n := 0
	Default(&n, 7)
	if n != 7 {
		t.Errorf("Default(0, 7) = %d", n)
	}
}

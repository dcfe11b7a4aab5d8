package corepipe

import "testing"

func TestElideTypeArgs(t *testing.T) {
	for in, want := range map[string]string{
		"main.main":                               "main.main",
		"main.Map[go.shape.int,go.shape.string]":  "main.Map[...]",
		"main.(*List[go.shape.[]int]).Push":       "main.(*List[...]).Push",
		"main.f[go.shape.map[string][]int].func1": "main.f[...].func1",
	} {
		if got := ElideTypeArgs(in); got != want {
			t.Errorf("ElideTypeArgs(%q) = %q, want %q", in, got, want)
		}
	}
}

package corepipe

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

func TestElideTypeArgs(t *testing.T) {
	testkit.Table(t, "ElideTypeArgs", ElideTypeArgs, map[string]string{
		"main.main":                               "main.main",
		"main.Map[go.shape.int,go.shape.string]":  "main.Map[...]",
		"main.(*List[go.shape.[]int]).Push":       "main.(*List[...]).Push",
		"main.f[go.shape.map[string][]int].func1": "main.f[...].func1",
	})
}

package inspect

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/pkg/proc/core"

	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestRuntimeGlobalsBySymbol: every runtime variable the analysis reads is
// found in the executable's symbol table, and reading it through its
// address gives what delve's own lookup by name gives.
func TestRuntimeGlobalsBySymbol(t *testing.T) {
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": brokenProgram}})
	corePath, _ := crashtest.Core(t, exe, nil)
	tg, err := core.OpenCore(corePath, exe, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Detach(false)
	a := newAnalysis(context.Background(), tg.Selected, Options{}.withDefaults(), 0)
	frames, err := proc.ThreadStacktrace(a.t, a.t.CurrentThread(), 1)
	if err != nil {
		t.Fatal(err)
	}
	a.global = proc.FrameToScope(a.t, a.t.Memory(), nil, a.t.CurrentThread().ThreadID(), frames[0])

	syms, err := readGlobalSyms(exe, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name := range runtimeGlobals {
		if s := syms[name]; s.addr == 0 || s.size == 0 {
			t.Errorf("%s: symbol %+v", name, s)
		}
	}
	exprs := []string{
		"runtime.gomaxprocs", "runtime.allglen", "runtime.sched.maxmcount", "runtime.sched.mnext",
		"runtime.gcController.gcPercent.value", "runtime.gcController.memoryLimit.value",
	}
	for _, e := range exprs {
		if e == a.globalExpr(e) {
			t.Errorf("%s is not read by its address", e)
		}
		byName, byAddr := a.evalUintRaw(e), a.evalUint(a.global, e)
		if byName != byAddr || byName == 0 {
			t.Errorf("%s: %d by name, %d by address", e, byName, byAddr)
		}
	}
	for i := range 4 {
		for _, arr := range []string{"runtime.waitReasonStrings", "runtime.gStatusStrings"} {
			e := fmt.Sprintf("%s[%d]", arr, i+1)
			byName := ""
			if v, err := a.global.EvalExpression(e, loadValue); err == nil && v.Value != nil {
				byName = v.Value.ExactString()
			}
			byAddr := fmt.Sprintf("%q", a.evalString(a.global, e))
			if byName != byAddr || byName == `""` {
				t.Errorf("%s: %s by name, %s by address", e, byName, byAddr)
			}
		}
	}
	if sig := a.evalString(a.global, "runtime.sigtable[11].name"); sig != "SIGSEGV: segmentation violation" {
		t.Errorf("runtime.sigtable[11].name = %q", sig)
	}
	if ft, err := a.newFuncTable(); err != nil || ft == nil {
		t.Errorf("function table from runtime.firstmoduledata: %v", err)
	}
}

// evalUintRaw is evalUint through delve's lookup by name.
func (a *analysis) evalUintRaw(expr string) uint64 {
	v, err := a.global.EvalExpression(expr, loadScalar)
	if err != nil {
		return 0
	}
	return uintOf(v)
}

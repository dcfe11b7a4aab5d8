package corepipe

import (
	"strings"
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

func TestSignalName(t *testing.T) {
	testkit.Table(t, "SignalName", SignalName, map[int]string{6: "SIGABRT", 11: "SIGSEGV", 31: "SIGSYS", 0: "SIG0", 32: "SIG32", 64: "SIG64", -1: "SIG-1"})
}

// The texts are the Go runtime's (runtime/sigtab_linux_generic.go), so that a
// C program's report reads like the traceback of a Go program.
func TestSignalText(t *testing.T) {
	testkit.Table(t, "SignalText", SignalText, map[int]string{7: "bus error", 11: "segmentation violation", 13: "write to broken pipe", 10: "signal", 99: "signal"})
}

func TestSignalMeaning(t *testing.T) {
	for n, want := range map[int]string{
		6:  "GOTRACEBACK=crash",
		9:  "OOM killer",
		11: "C or cgo code",
		15: "did not handle the signal",
	} {
		if got := SignalMeaning(n); !strings.Contains(got, want) {
			t.Errorf("SignalMeaning(%d) = %q, want it to mention %q", n, got, want)
		}
	}
	if got := SignalMeaning(10); got != "" {
		t.Errorf("SignalMeaning(SIGUSR1) = %q: corepipe knows nothing to add", got)
	}
}

func TestExitCodeMeaning(t *testing.T) {
	for _, tc := range []struct {
		code, sig int
		want      string
	}{
		{0, 0, ""},
		{1, 0, "exit code 1: the program reported an error"},
		{2, 0, "exit code 2: an unrecovered Go panic"},
		{126, 0, "exit code 126: the command was found but could not be executed"},
		{127, 0, "exit code 127: the command was not found"},
		{255, 0, "exit code 255: an exit status out of range"},
		{134, 6, "exit code 134 = 128+6: killed by SIGABRT (a Go program with GOTRACEBACK=crash"},
		{137, 9, "exit code 137 = 128+9: killed by SIGKILL (nothing in the process sent it"},
		{139, 11, "exit code 139 = 128+11: killed by SIGSEGV (a segmentation fault in C or cgo code"},
		{138, 10, "exit code 138 = 128+10: killed by SIGUSR1"},
		// 128+n without the signal is a program's own choice of number.
		{139, 0, "exit code 139: chosen by the program"},
		{3, 0, "exit code 3: chosen by the program"},
	} {
		got := ExitCodeMeaning(tc.code, tc.sig)
		if !strings.HasPrefix(got, tc.want) || (tc.want == "") != (got == "") {
			t.Errorf("ExitCodeMeaning(%d, %d) = %q, want %q…", tc.code, tc.sig, got, tc.want)
		}
	}
	if got := ExitCodeMeaning(138, 10); got != "exit code 138 = 128+10: killed by SIGUSR1" {
		t.Errorf("a signal with nothing to add gets no empty parentheses: %q", got)
	}
}

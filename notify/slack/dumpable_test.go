package slack

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/corepipe/corepipe/notify"
)

// TestPrivilegedCrashOmitsMessageAndFrames: the core of a process dumped
// under suid_dumpable=2 holds memory its user could not read, and the panic
// message and frames come from it: Slack gets neither, only the link.
func TestPrivilegedCrashOmitsMessageAndFrames(t *testing.T) {
	r := nilDeref()
	r.Panic.Message = "secret token hunter2 rejected"
	r.Title = "panic: secret token hunter2 rejected"
	r.Process.Dumpable = 2
	raw, err := json.Marshal(render(t, alertOf(notify.KindNew, r)))
	if err != nil {
		t.Fatal(err)
	}
	out := string(raw)
	for _, leak := range []string{"hunter2", "main.(*server).retries", "/src/api/main.go"} {
		if strings.Contains(out, leak) {
			t.Errorf("payload of a privileged crash contains %q:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, "suid_dumpable=2") || !strings.Contains(out, r.ID) {
		t.Errorf("payload does not say why details are missing or where to find them:\n%s", out)
	}

	// The same crash of a normal process shows them.
	r.Process.Dumpable = 1
	raw, _ = json.Marshal(render(t, alertOf(notify.KindNew, r)))
	if !strings.Contains(string(raw), "hunter2") || !strings.Contains(string(raw), "main.(*server).retries") {
		t.Errorf("normal crash lost its message or frames:\n%s", raw)
	}
}

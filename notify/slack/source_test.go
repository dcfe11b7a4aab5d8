package slack

import (
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/notify"
)

// TestAlertSaysSource: a crash reported from a log, not a core, says so.
func TestAlertSaysSource(t *testing.T) {
	r := nilDeref()
	r.Source = corepipe.SourceLog
	p := render(t, alertOf(notify.KindNew, r))
	fields := plainFields(t, p)
	if !strings.Contains(strings.Join(fields, "\n"), "From: container log (no core)") {
		t.Errorf("fields %q do not say the report came from the container's log", fields)
	}
}

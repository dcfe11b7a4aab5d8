package netconsole

import (
	"testing"

	"github.com/corepipe/corepipe"
)

// A receiver that names the sender's node from the cluster and one that
// knows only its address record the same panic as one crash: the node is
// the crash's field, not part of its ID.
func TestCrashIDWithoutNodeName(t *testing.T) {
	c := &Capture{Sender: "10.0.0.7:6665", Log: []byte("[   12.345678] Kernel panic - not syncing: Fatal exception\n")}
	byAddr, _ := crashOf(c, "")
	byName, _ := crashOf(c, "node-7")
	if byAddr.ID != byName.ID || byAddr.Node != "10.0.0.7" || byName.Node != "node-7" {
		t.Errorf("by address %s on %q, by name %s on %q", byAddr.ID, byAddr.Node, byName.ID, byName.Node)
	}
	c.Source = corepipe.SourcePstore
	if p, _ := crashOf(c, "node-7"); p.ID != byName.ID || p.Console.Source != corepipe.SourcePstore || len(p.Notes) != 0 {
		t.Errorf("from pstore: %s source %s notes %v", p.ID, p.Console.Source, p.Notes)
	}
}

package analyzer

import (
	"fmt"
	"path"
	"time"

	"github.com/corepipe/corepipe"
)

// droppedReport is the report of a crash whose core the collector chose
// not to keep: a crash storm past the rate limit, a full spool, RLIMIT_CORE
// 0; or whose core the fleet's core policy kept on its node unanalysed.
// Nothing failed — the crash is recorded with what the collector knew,
// and counted with its executable and node.
func droppedReport(c *corepipe.Crash) *corepipe.Report {
	r := corepipe.NewReport(c)
	r.Status = corepipe.StatusDropped
	r.Source = corepipe.SourceCore
	what := "crash"
	if r.Signal != nil {
		what = r.Signal.Name
	}
	exe := c.Process.Exe
	if exe == "" {
		exe = c.Process.Comm
	}
	if l := c.Core.Location; c.Core.Dropped == "" && l != nil {
		// The fleet's core policy kept the core on its node, and the
		// agent did not analyse it there (--analyze-on-node=false).
		r.Title = fmt.Sprintf("%s in %s: core kept on node %s (%s)", what, path.Base(exe), l.Node, l.Reason)
		r.Lacks = append(r.Lacks, "the stack and memory: the core is "+c.Core.Where(time.Now()).String()+"; request it to have it analysed")
	} else {
		r.Title = fmt.Sprintf("%s in %s: core not kept (%s)", what, path.Base(exe), c.Core.Dropped)
		r.Lacks = append(r.Lacks, "the stack and memory: the collector kept no core ("+c.Core.Dropped+")")
	}
	Enrich(r, c)
	// No stack, no signature: a dropped crash joins no group by itself.
	r.Signature = ""
	return r
}

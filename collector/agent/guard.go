package agent

import (
	"errors"
	"time"

	"github.com/corepipe/corepipe/collector/corepattern"
)

// Guard keeps the kernel's core_pattern pointing at the collector while the
// agent runs. A package upgrade (systemd, apport) or an operator's sysctl
// can overwrite it, and from then on every crash of the node would be lost
// without a word: the agent checks every Every and installs Want again.
type Guard struct {
	Handler corepattern.Handler
	Want    corepattern.Settings
	// Every is how often the kernel is checked; a minute when 0.
	Every time.Duration
}

func (g *Guard) every() time.Duration {
	if g.Every <= 0 {
		return time.Minute
	}
	return g.Every
}

// check installs the handler again if the kernel's settings were changed.
func (a *Agent) check(g *Guard) {
	replaced, err := g.Handler.Ensure(g.Want)
	switch {
	case errors.Is(err, corepattern.ErrForeign):
		a.log.Error("core_pattern taken by another handler; not replacing it without --force: crashes on this node are not captured", "err", err)
	case err != nil:
		a.log.Error("check core_pattern", "err", err)
	case replaced != nil:
		a.m.reinstalls.Inc()
		a.log.Warn("core_pattern was overwritten; crash handler installed again",
			"found", replaced.Pattern, "found_pipe_limit", replaced.PipeLimit, "core_pattern", g.Want.Pattern)
	}
}

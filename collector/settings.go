package collector

import "github.com/corepipe/corepipe/collector/spool"

// Apply puts the limits the agent left in the spool into cfg.
func (cfg *Config) Apply(s spool.Settings) {
	cfg.MaxCoreSize = s.MaxCoreSize
	cfg.SpoolMaxUse = s.MaxUse
	cfg.SpoolKeepFree = s.KeepFree
	if len(s.EnvAllow) > 0 {
		cfg.EnvAllowlist = s.EnvAllow
	}
	cfg.IgnoreRlimitCore = s.IgnoreRlimitCore
	cfg.RateLimit = s.RateLimit
	cfg.RateWindow = s.RateWindow
	cfg.MaxExecutableSize = s.MaxExecutableSize
	cfg.MaxCollectors = s.MaxCollectors
}

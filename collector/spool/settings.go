package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// SettingsFile is the name, inside the spool, of the settings the agent
// leaves for the collector. The kernel's core_pattern holds at most 127
// bytes, too few for the limits, so they travel through the spool instead;
// the agent can change them without reinstalling the handler.
const SettingsFile = "collector.json"

// Settings are the collector's limits as the agent configured them. Zero
// values mean no limit.
type Settings struct {
	MaxCoreSize      int64    `json:"max_core_size,omitempty"`
	MaxUse           int64    `json:"max_use,omitempty"`
	KeepFree         int64    `json:"keep_free,omitempty"`
	EnvAllow         []string `json:"env_allow,omitempty"`
	IgnoreRlimitCore bool     `json:"ignore_rlimit_core,omitempty"`
	// RateLimit is how many cores of one executable are kept per
	// RateWindow (in nanoseconds in the file; collector.DefaultRateWindow
	// when 0).
	RateLimit  int           `json:"rate_limit,omitempty"`
	RateWindow time.Duration `json:"rate_window,omitempty"`
	// MaxExecutableSize is the largest executable hashed or copied
	// (collector.DefaultMaxExecutableSize when 0, no limit when negative).
	MaxExecutableSize int64 `json:"max_executable_size,omitempty"`
	// MaxCollectors is how many collectors may store a core at once on the
	// node (collector.DefaultMaxCollectors when 0); keep it below core_pipe_limit.
	MaxCollectors int `json:"max_collectors,omitempty"`
}

// LoadSettings reads the spool's settings; a spool without any has the
// zero Settings.
func LoadSettings(spool string) (Settings, error) {
	var s Settings
	f, err := openNoFollow(filepath.Join(spool, SettingsFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("collector settings: %w", err)
	}
	defer f.Close()
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return Settings{}, fmt.Errorf("collector settings %s: %w", f.Name(), err)
	}
	return s, nil
}

// Save writes the settings into the spool atomically, so a collector
// starting meanwhile reads either the old or the new ones.
func (s Settings) Save(spool string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(spool, SettingsFile+".tmp")
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("save collector settings: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(spool, SettingsFile))
	}
	if err != nil {
		return fmt.Errorf("save collector settings: %w", err)
	}
	return nil
}

package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/corepipe/corepipe/collector/internal/hostfile"
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
	name := filepath.Join(spool, SettingsFile)
	err = hostfile.Replace(name, name+".tmp", 0o600, true, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
	if err != nil {
		return fmt.Errorf("save collector settings: %w", err)
	}
	return nil
}

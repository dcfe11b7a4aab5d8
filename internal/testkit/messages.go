package testkit

import (
	"context"
	"log/slog"
	"sync"
)

// Messages is a slog.Handler that counts the messages logged through it,
// so that a test can wait for a part to have done something that leaves no
// other trace. Levels and attributes are not kept. The zero value is ready.
type Messages struct {
	mu  sync.Mutex
	got map[string]int
}

func (m *Messages) Enabled(context.Context, slog.Level) bool { return true }

func (m *Messages) Handle(_ context.Context, r slog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.got == nil {
		m.got = map[string]int{}
	}
	m.got[r.Message]++
	return nil
}

func (m *Messages) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m *Messages) WithGroup(string) slog.Handler      { return m }

// Count is how many times msg was logged.
func (m *Messages) Count(msg string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.got[msg]
}

package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configures an in-process NATS server.
type EmbeddedOptions struct {
	// StoreDir holds the JetStream state; required, so that a restart of
	// `corepipe dev` on the same data directory keeps the queue.
	StoreDir string
	// Host to listen on; default 127.0.0.1, since the embedded server has
	// no authentication.
	Host string
	// Port to listen on: -1 picks a free one, 0 means NATS's 4222.
	Port int
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
}

// Embedded is a nats-server with JetStream running inside this process.
type Embedded struct {
	s *server.Server
}

// readyTimeout is how long StartEmbedded waits for the listener and for
// JetStream to recover its state from StoreDir.
const readyTimeout = 30 * time.Second

// StartEmbedded starts a JetStream-enabled server and returns once it accepts
// connections.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if o.StoreDir == "" {
		return nil, errors.New("queue: embedded server: no store dir")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	s, err := server.NewServer(&server.Options{
		Host:      o.Host,
		Port:      o.Port,
		JetStream: true,
		StoreDir:  o.StoreDir,
		// A PubAck lets the agent delete its spooled copy, so the message
		// must be on disk by then, not in the page cache for the next
		// periodic sync. Crashes are rare enough for an fsync each.
		SyncAlways: true,
		// The process that embeds the server owns its signals.
		NoSigs: true,
		NoLog:  o.Logger == nil,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: embedded server: %w", err)
	}
	if o.Logger != nil {
		s.SetLogger(serverLogger{o.Logger.With("component", "nats-server")}, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("queue: embedded server on %s:%d with store %s: not ready after %s", o.Host, o.Port, o.StoreDir, readyTimeout)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("queue: embedded server with store %s: JetStream did not start", o.StoreDir)
	}
	return &Embedded{s: s}, nil
}

// ClientURL is the nats:// URL to give Open.
func (e *Embedded) ClientURL() string { return e.s.ClientURL() }

// Shutdown stops the server and returns once it has released its port and
// its store, so that another can start on them.
func (e *Embedded) Shutdown() {
	e.s.Shutdown()
	e.s.WaitForShutdown()
}

// serverLogger sends nats-server's printf-style log to slog.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }

// Fatalf logs without exiting: an embedded server's failure must not take
// the whole process down with it.
func (s serverLogger) Fatalf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }

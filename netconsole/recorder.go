package netconsole

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/kernlog"
)

// Publisher queues crashes; corepipe.Queue is one.
type Publisher interface {
	PublishCrash(ctx context.Context, c *corepipe.Crash) error
}

// PodLister names the pods known to have run on a node up to a time.
type PodLister interface {
	PodsOn(ctx context.Context, node string, at time.Time) ([]corepipe.PodRef, error)
}

// NodeNamer names the node a sender is ("10.0.0.7:6665"), "" when it does
// not know.
type NodeNamer interface {
	NodeOf(ctx context.Context, sender string) string
}

// Observer is told of every kernel panic recorded, with its headline.
type Observer interface {
	Recorded(ctx context.Context, c *corepipe.Crash, title string)
}

// Recorder turns a capture into a crash: the console log stored next to
// the manifest, the crash published with an ID derived from the panic
// itself.
type Recorder struct {
	Blobs corepipe.BlobStore
	Queue Publisher
	// Nodes, when set, names the node of a sender that gave no node= in
	// its userdata (kernels before 6.9 cannot).
	Nodes NodeNamer
	// Pods, when set, names the pods the panic took down.
	Pods PodLister
	// Observer, when set, is told of each panic once it is recorded.
	Observer Observer
	Logger   *slog.Logger
}

// Crash is the manifest of capture c, without storing anything.
func Crash(c *Capture) *corepipe.Crash {
	cr, _ := crashOf(c, "")
	return cr
}

// crashOf is the manifest of capture c and the panic it holds; node names
// the sender when c does not.
func crashOf(c *Capture, node string) (*corepipe.Crash, *corepipe.KernelPanic) {
	if c.Node != "" {
		node = c.Node
	}
	if node == "" {
		// Without userdata the sender's address is all that names it;
		// the port is the kernel's fixed local one.
		node = c.Sender
		if ap, err := netip.ParseAddrPort(c.Sender); err == nil {
			node = ap.Addr().Unmap().String()
		} else if h, _, err := net.SplitHostPort(c.Sender); err == nil {
			node = h
		}
	}
	k, err := kernlog.Parse(bytes.NewReader(c.Log))
	if err != nil {
		// The receiver saw a panic line the parser did not take for one
		// (a line cut mid-word): the log itself is the content.
		sum := sha256.Sum256(c.Log)
		k = &corepipe.KernelPanic{Message: fmt.Sprintf("%x", sum[:8])}
	}
	source := c.Source
	if source == "" {
		source = corepipe.SourceNetconsole
	}
	cr := &corepipe.Crash{
		Schema:     corepipe.ManifestSchema,
		ID:         corepipe.KernelPanicID(node, k),
		CapturedAt: c.PanicAt.UTC(),
		Node:       node,
		Console: &corepipe.ConsoleArtifact{
			Source: source, Sender: c.Sender, Size: int64(len(c.Log)),
			Gaps: c.Gaps, MissingFragments: c.MissingFragments, Dropped: c.Dropped,
		},
	}
	cr.Console.Key = corepipe.ConsoleKey(cr)
	if c.RateLimited > 0 {
		cr.Notes = append(cr.Notes, fmt.Sprintf("%d datagrams over the sender's rate limit were dropped", c.RateLimited))
	}
	if source == corepipe.SourceNetconsole && !c.Ended {
		cr.Notes = append(cr.Notes, fmt.Sprintf("handed over after the sender was quiet since %s", c.LastAt.UTC().Format(time.RFC3339)))
	}
	return cr, k
}

// Record stores and publishes capture c and returns its crash. It is
// idempotent: the same panic makes the same ID and keys, and the queue
// drops the duplicate.
func (r *Recorder) Record(ctx context.Context, c *Capture) (*corepipe.Crash, error) {
	var node string
	if r.Nodes != nil && c.Node == "" {
		node = r.Nodes.NodeOf(ctx, c.Sender)
	}
	cr, k := crashOf(c, node)
	if _, err := r.Blobs.Stat(ctx, corepipe.ManifestKey(cr)); err == nil {
		// Recorded already, by a receiver beside this one or from the
		// other side of the reboot under the same node name: its console
		// log stays, a pstore record holding less than netconsole's.
		r.logger().Info("kernel panic recorded before", corepipe.LogKeyCrash, cr.ID, "node", cr.Node, "source", cr.Console.Source)
		r.observe(ctx, cr, k)
		return cr, nil
	} else if !errors.Is(err, corepipe.ErrNotFound) {
		return nil, fmt.Errorf("look for the manifest: %w", err)
	}
	if r.Pods != nil {
		pods, err := r.Pods.PodsOn(ctx, cr.Node, cr.CapturedAt)
		if err != nil {
			r.logger().Warn("netconsole: pods of the node unknown", corepipe.LogKeyCrash, cr.ID, "node", cr.Node, "err", err)
		}
		cr.Pods = pods
	}
	if err := r.Blobs.Put(ctx, cr.Console.Key, bytes.NewReader(c.Log), int64(len(c.Log))); err != nil {
		return nil, fmt.Errorf("store console log: %w", err)
	}
	manifest, err := json.Marshal(cr)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := r.Queue.PublishCrash(ctx, cr); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if err := r.Blobs.Put(ctx, corepipe.ManifestKey(cr), bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		return nil, fmt.Errorf("store manifest: %w", err)
	}
	r.logger().Info("kernel panic recorded", corepipe.LogKeyCrash, cr.ID, "node", cr.Node, "source", cr.Console.Source, "sender", c.Sender, "pods", len(cr.Pods))
	r.observe(ctx, cr, k)
	return cr, nil
}

func (r *Recorder) observe(ctx context.Context, cr *corepipe.Crash, k *corepipe.KernelPanic) {
	if r.Observer != nil {
		r.Observer.Recorded(ctx, cr, corepipe.KernelTitle(k))
	}
}

func (r *Recorder) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// Run receives on pc with cfg and records every capture with rec until
// ctx is done. Recording happens off the receiving goroutine, retried
// with backoff, so a slow store does not cost other senders' datagrams.
func Run(ctx context.Context, pc net.PacketConn, cfg Config, rec *Recorder) error {
	caps := make(chan *Capture, 64)
	recv, err := New(cfg, func(c *Capture) {
		select {
		case caps <- c:
			return
		default:
		}
		select {
		case caps <- c:
		case <-ctx.Done():
			rec.logger().Error("netconsole: kernel panic lost: shutting down with the recorder busy", "sender", c.Sender, "node", c.Node)
		}
	})
	if err != nil {
		pc.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range caps {
			rec.recordRetrying(ctx, c)
		}
	}()
	err = recv.Serve(ctx, pc)
	close(caps)
	<-done
	return err
}

// recordRetrying records c with backoff. The capture exists nowhere else,
// so it outlives a shutdown by a few seconds.
func (r *Recorder) recordRetrying(ctx context.Context, c *Capture) {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(10*time.Second, cancel) })
	defer stop()
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := r.Record(rctx, c)
		if err == nil {
			return
		}
		if attempt == 8 || rctx.Err() != nil {
			r.logger().Error("netconsole: kernel panic lost: cannot record it", "sender", c.Sender, "node", c.Node, "err", err)
			return
		}
		r.logger().Warn("netconsole: record kernel panic, will retry", "sender", c.Sender, "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-rctx.Done():
		}
		delay = min(2*delay, 10*time.Second)
	}
}

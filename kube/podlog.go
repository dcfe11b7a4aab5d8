package kube

import (
	"bytes"
	"context"
	"fmt"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/containerlog"
)

// attachLog reads the log of the run t ended and stores the excerpt that
// holds its crash next to c's manifest, so that a crash without a core
// (PID 1 ignoring the runtime's SIGABRT, GOTRACEBACK unset) is still
// reported from its traceback. It runs when the record ships, before the
// kubelet's garbage collection removes the dead container and its log. A
// log that cannot be found or read is a note, not a failure; a blob store
// that refuses the excerpt is a failure, retried with the record.
func (w *Watcher) attachLog(ctx context.Context, t termination, c *corepipe.Crash) error {
	if w.cfg.Blobs == nil || w.cfg.LogRoots.Pods == "" {
		return nil
	}
	attempt := int(t.status.RestartCount)
	if t.state == t.status.LastTerminationState.Terminated && attempt > 0 {
		// The run that ended is the one before the current.
		attempt--
	}
	files, err := containerlog.Files(w.cfg.LogRoots, containerlog.Run{
		Namespace: t.pod.Namespace, Pod: t.pod.Name, PodUID: string(t.pod.UID),
		Container: t.status.Name, ContainerID: t.state.ContainerID, Attempt: attempt,
	})
	if err != nil {
		c.Notes = append(c.Notes, "no container log: "+err.Error())
		return nil
	}
	ex, err := containerlog.ReadExcerpt(ctx, files, containerlog.ExcerptOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.Notes = append(c.Notes, "container log unreadable: "+err.Error())
		return nil
	}
	if len(ex.Text) == 0 {
		c.Notes = append(c.Notes, "the container's log is empty")
		return nil
	}
	c.Log = &corepipe.LogArtifact{
		Source: corepipe.SourceLog, Path: ex.Path, Format: ex.Format,
		Size: int64(len(ex.Text)), Truncated: ex.Truncated, Key: corepipe.LogKey(c),
	}
	if !ex.Crash {
		c.Notes = append(c.Notes, "the container's log holds no Go crash: its last lines are kept")
	}
	if err := w.cfg.Blobs.Put(ctx, c.Log.Key, bytes.NewReader(ex.Text), int64(len(ex.Text))); err != nil {
		c.Log = nil
		return fmt.Errorf("store log excerpt: %w", err)
	}
	return nil
}

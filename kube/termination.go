package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/corepipe/corepipe"
)

// reasonOOMKilled is the kubelet's reason for a container the kernel's OOM
// killer ended.
const reasonOOMKilled = "OOMKilled"

// termination is one container run that ended badly, as its pod's status
// records it.
type termination struct {
	key    string
	pod    *corev1.Pod
	status corev1.ContainerStatus
	state  *corev1.ContainerStateTerminated
	// at is when the run ended: FinishedAt, else the best time known.
	at time.Time
}

type pendingTermination struct {
	t        termination
	due      time.Time
	attempts int
}

// terminationsOf returns the bad ends pod's status shows: the current state
// of a container that stopped and the last state of one that restarted.
func terminationsOf(pod *corev1.Pod) []termination {
	var out []termination
	for _, cs := range statuses(pod) {
		for _, st := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
			if st == nil || !badEnd(pod, st) {
				continue
			}
			t := termination{pod: pod, status: cs, state: st, at: endTime(pod, st)}
			t.key = strings.Join([]string{string(pod.UID), cs.Name, st.ContainerID, t.at.UTC().Format(time.RFC3339Nano)}, "/")
			if len(out) > 0 && out[len(out)-1].key == t.key {
				continue
			}
			out = append(out, t)
		}
	}
	return out
}

// badEnd reports whether a run's end is a crash: a non-zero exit or an OOM
// kill. The kubelet's own kill of a pod being deleted is not.
func badEnd(pod *corev1.Pod, st *corev1.ContainerStateTerminated) bool {
	if st.Reason == reasonOOMKilled {
		return true
	}
	if st.ExitCode == 0 {
		return false
	}
	if pod.DeletionTimestamp != nil && (st.ExitCode == 128+9 || st.ExitCode == 128+15) {
		return false
	}
	return true
}

func endTime(pod *corev1.Pod, st *corev1.ContainerStateTerminated) time.Time {
	switch {
	case !st.FinishedAt.IsZero():
		return st.FinishedAt.Time
	case !st.StartedAt.IsZero():
		return st.StartedAt.Time
	default:
		return pod.CreationTimestamp.Time
	}
}

// onPod notes the terminations of a pod the informer added, updated or
// deleted.
func (w *Watcher) onPod(obj any, deleted bool) {
	pod := podOf(obj)
	if pod == nil || pod.Spec.NodeName != w.cfg.Node {
		return
	}
	now := w.now()
	ts := terminationsOf(pod)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.broadcast()
	seen := w.seen[pod.UID]
	if seen == nil {
		seen = map[string]bool{}
	}
	current := make(map[string]bool, len(ts))
	added := false
	for _, t := range ts {
		current[t.key] = true
		if seen[t.key] || w.pending[t.key] != nil {
			continue
		}
		if now.Sub(t.at) > w.cfg.MaxAge {
			seen[t.key] = true
			continue
		}
		due := now
		if dumpsCore(signalOf(t.state)) && w.coreOf(t) == "" {
			due = t.at.Add(w.cfg.LinkWait)
		}
		w.pending[t.key] = &pendingTermination{t: t, due: due}
		added = true
	}
	// A termination leaves the status when the container ends again; it
	// cannot come back, so neither need its key.
	for k := range seen {
		if !current[k] {
			delete(seen, k)
		}
	}
	if deleted {
		delete(w.seen, pod.UID)
		w.remember(pod, now)
	} else {
		w.seen[pod.UID] = seen
	}
	if added {
		w.kick()
	}
}

// recordLoop ships pending terminations when they are due, retrying with
// backoff while the blob store or the queue is down.
func (w *Watcher) recordLoop(ctx context.Context, rec Recorder) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, next := w.due()
		if len(due) > 0 {
			for _, p := range due {
				w.ship(ctx, rec, p)
			}
			// A failed one is pending again, due later: look once more.
			continue
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(w.now()), 10*time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C:
		}
	}
}

// due takes the pending terminations that are due, and returns when the
// next one will be.
func (w *Watcher) due() ([]*pendingTermination, time.Time) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*pendingTermination
	var next time.Time
	for k, p := range w.pending {
		if !p.due.After(now) || w.coreOf(p.t) != "" {
			out = append(out, p)
			delete(w.pending, k)
			continue
		}
		if next.IsZero() || p.due.Before(next) {
			next = p.due
		}
	}
	return out, next
}

func (w *Watcher) ship(ctx context.Context, rec Recorder, p *pendingTermination) {
	w.mu.Lock()
	coreID := w.coreOf(p.t)
	w.mu.Unlock()
	c := w.crashOf(p.t, coreID)
	log := w.log.With(corepipe.LogKeyCrash, c.ID, "pod", c.Container.Namespace+"/"+c.Container.Pod, "container", c.Container.Container)
	err := w.alreadyRecorded(ctx, c)
	if errors.Is(err, errRecorded) {
		log.Debug("termination already recorded")
		w.markSeen(p.t)
		return
	}
	if err == nil {
		err = w.attachLog(ctx, p.t, c)
	}
	if err == nil {
		err = rec.ShipRecord(ctx, c)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		p.attempts++
		retry := min(time.Second<<min(p.attempts, 6), time.Minute)
		p.due = w.now().Add(retry)
		w.mu.Lock()
		w.pending[p.t.key] = p
		w.mu.Unlock()
		log.Warn("record termination", "err", err, "retry_in", retry)
		return
	}
	w.markSeen(p.t)
	log.Info("termination recorded", "exit_code", c.Termination.ExitCode, "reason", c.Termination.Reason,
		"signal", c.Signal.Name, "core_id", coreID)
}

var errRecorded = errors.New("already recorded")

// alreadyRecorded returns errRecorded when the manifest of c is stored: the
// termination was recorded before this agent started.
func (w *Watcher) alreadyRecorded(ctx context.Context, c *corepipe.Crash) error {
	if w.cfg.Blobs == nil {
		return nil
	}
	_, err := w.cfg.Blobs.Stat(ctx, corepipe.ManifestKey(c))
	switch {
	case err == nil:
		return errRecorded
	case errors.Is(err, corepipe.ErrNotFound):
		return nil
	default:
		return fmt.Errorf("check for a stored record: %w", err)
	}
}

func (w *Watcher) markSeen(t termination) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Only while the pod is cached: a key of a deleted pod would never be
	// pruned.
	if seen := w.seen[t.pod.UID]; seen != nil {
		seen[t.key] = true
	}
}

// crashOf builds the record of a termination: no process, no core, the
// container and how it ended.
func (w *Watcher) crashOf(t termination, coreID string) *corepipe.Crash {
	st := t.state
	sig := signalOf(st)
	c := &corepipe.Crash{
		Schema:     corepipe.ManifestSchema,
		ID:         terminationID(t),
		CapturedAt: t.at.UTC(),
		Node:       w.cfg.Node,
		Container:  containerMeta(t.pod, &t.status, st.ContainerID),
		Termination: &corepipe.Termination{
			ExitCode:     int(st.ExitCode),
			Reason:       st.Reason,
			Signal:       sig,
			Message:      st.Message,
			RestartCount: int(t.status.RestartCount),
			StartedAt:    st.StartedAt.UTC(),
			FinishedAt:   st.FinishedAt.UTC(),
			CoreID:       coreID,
		},
		Notes: explainExit(t, sig),
	}
	if sig != 0 {
		c.Signal = corepipe.Signal{Number: sig, Name: corepipe.SignalName(sig)}
	}
	c.Core.Dropped = "no core: " + whyNoCore(st, sig, coreID)
	return c
}

// terminationID derives the crash ID from the termination itself, so that a
// termination seen again — on a resync, by a restarted agent — gets the same
// ID, the same blob keys, and is dropped by the queue's deduplication.
func terminationID(t termination) string {
	h := sha256.Sum256([]byte("corepipe/termination/v1\x00" + t.key))
	return ulid.MustNew(ulid.Timestamp(t.at), bytes.NewReader(h[:10])).String()
}

// signalOf is the signal that ended a run: the one the runtime reports, else
// 128+n from the exit code. An OOM-killed container whose main process was
// the one killed exits 137.
func signalOf(st *corev1.ContainerStateTerminated) int {
	switch {
	case st.Signal != 0:
		return int(st.Signal)
	case st.Reason == reasonOOMKilled && st.ExitCode == 0:
		return 9
	case st.ExitCode > 128 && st.ExitCode <= 128+64:
		return int(st.ExitCode) - 128
	}
	return 0
}

// dumpsCore reports whether the kernel's default action for sig is a core
// dump (signal(7)).
func dumpsCore(sig int) bool {
	switch sig {
	case 3, 4, 5, 6, 7, 8, 11, 24, 25, 31: // QUIT ILL TRAP ABRT BUS FPE SEGV XCPU XFSZ SYS
		return true
	}
	return false
}

func whyNoCore(st *corev1.ContainerStateTerminated, sig int, coreID string) string {
	switch {
	case coreID != "":
		return "this is the container's termination; its core is crash " + coreID
	case st.Reason == reasonOOMKilled:
		return "OOM killed: SIGKILL never leaves a core"
	case sig == 9:
		return "SIGKILL never leaves a core"
	case dumpsCore(sig):
		return fmt.Sprintf("%s should have dumped core but none reached the agent (RLIMIT_CORE 0, dropped by the collector, or the crash handler not installed)", corepipe.SignalName(sig))
	case sig != 0:
		return corepipe.SignalName(sig) + " does not dump core"
	default:
		return fmt.Sprintf("the program exited with code %d itself; only a signal dumps core", st.ExitCode)
	}
}

// explainExit says in words what the exit code and reason mean.
func explainExit(t termination, sig int) []string {
	st := t.state
	var notes []string
	if st.Reason == reasonOOMKilled {
		n := "OOMKilled: the kernel's OOM killer ended the container"
		if lim := memoryLimit(t.pod, t.status.Name); lim != "" {
			n += " at its memory limit of " + lim
		}
		if st.ExitCode != 0 && st.ExitCode != 137 {
			n += fmt.Sprintf("; a process of the container was killed and the main one then exited with code %d", st.ExitCode)
		}
		notes = append(notes, n)
	}
	if m := corepipe.ExitCodeMeaning(int(st.ExitCode), sig); m != "" {
		notes = append(notes, m)
	}
	if id := kernelPanicOf(t.pod); id != "" && (st.ExitCode == 255 || st.Reason == "Unknown") {
		notes = append(notes, "its node's kernel panicked: corepipe crash "+id+" (after a reboot the kubelet reports the containers it lost as exit code 255, Unknown)")
	}
	return notes
}

func memoryLimit(pod *corev1.Pod, container string) string {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == container {
				if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
					return q.String()
				}
				return ""
			}
		}
	}
	return ""
}

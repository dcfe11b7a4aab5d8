package kube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/collector/agent"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/blobtest"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	"github.com/corepipe/corepipe/kube"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// runWatcher runs a watcher recording through ag until the returned stop.
func runWatcher(t *testing.T, cfg kube.Config, ag *agent.Agent) (*kube.Watcher, func()) {
	t.Helper()
	w, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, ag)
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	testkit.WaitFor(t, "the pod informer to sync", w.Synced)
	return w, sync.OnceFunc(stop)
}

// TestAgentWithWatcher runs the node agent with the watcher against real
// JetStream and a filesystem blob store: a core crash gets its pod and
// annotates it, the container's termination links to the core, an OOM kill
// becomes a record of its own, and a restarted agent records nothing twice.
func TestAgentWithWatcher(t *testing.T) {
	ctx := context.Background()
	srv := natstest.StartEmbedded(t)
	q, err := natsq.Open(ctx, srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	store, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const node = "node-a"
	runID := func(n int) string { return fmt.Sprintf("%064x", n) }
	now := time.Now().UTC().Truncate(time.Second)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "shop", UID: "6a3f6f2c-8f6e-4a8e-9d55-1c0b2f4e9a10",
			Labels:          map[string]string{"app": "db"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", Controller: new(true)}}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "postgres", Image: "postgres:17"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "postgres", ContainerID: "containerd://" + runID(1), Image: "docker.io/library/postgres:17",
			ImageID: "docker.io/library/postgres@sha256:" + runID(99),
			State:   corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now.Add(-time.Hour))}},
		}}},
	}
	client := fake.NewClientset(pod)
	cfg := kube.Config{Client: client, Node: node, UIURL: "http://corepipe.shop.svc", Blobs: store, LinkWait: time.Hour}

	sp := spool.Spool{Dir: t.TempDir()}
	var w *kube.Watcher
	ag := agent.New(agent.Config{Spool: sp, Blobs: store, Queue: q, Enricher: enricher{&w}, Observer: observer{&w}})
	w, stop := runWatcher(t, cfg, ag)

	// The collector's entry: a SIGABRT core of container run 1.
	core := &corepipe.Crash{Schema: corepipe.ManifestSchema, ID: corepipe.NewID(now), CapturedAt: now, Node: node,
		Signal:    corepipe.Signal{Number: 6, Name: "SIGABRT"},
		Container: &corepipe.Container{ID: runID(1), Runtime: "containerd", PodUID: string(pod.UID)}}
	writeEntry(t, sp.Dir, core)
	if n, err := ag.ShipAll(ctx); err != nil || n != 1 {
		t.Fatalf("ShipAll = %d, %v", n, err)
	}
	stored := manifest(t, store, core)
	if c := stored.Container; c.Pod != "db-0" || c.Container != "postgres" || c.Owner == nil || *c.Owner != (corepipe.Owner{Kind: "StatefulSet", Name: "db"}) {
		t.Errorf("stored core manifest container %+v", c)
	}
	testkit.WaitFor(t, "the pod annotation", func() bool {
		p, err := client.CoreV1().Pods("shop").Get(ctx, "db-0", metav1.GetOptions{})
		return err == nil && p.Annotations[kube.AnnotationCrashID] == core.ID
	})

	// The kubelet reports run 1's end (134) and later run 2's OOM kill.
	// Run n ran for an hour and ended n-1 minutes after now.
	update := func(run int, exit int32, reason string) {
		t.Helper()
		p, err := client.CoreV1().Pods("shop").Get(ctx, "db-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cs := &p.Status.ContainerStatuses[0]
		cs.RestartCount++
		cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: exit, Reason: reason,
			ContainerID: "containerd://" + runID(run), StartedAt: metav1.NewTime(now.Add(-time.Hour + time.Duration(run-1)*time.Minute)),
			FinishedAt: metav1.NewTime(now.Add(time.Duration(run-1) * time.Minute))}
		cs.ContainerID = "containerd://" + runID(run+1)
		if _, err := client.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := q.Crashes(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	next := func(wait time.Duration) *corepipe.Crash {
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		msg, err := cons.Next(ctx)
		if err != nil {
			return nil
		}
		var c corepipe.Crash
		if err := json.Unmarshal(msg.Data(), &c); err != nil {
			t.Fatal(err)
		}
		msg.Ack(ctx)
		return &c
	}
	if c := next(10 * time.Second); c == nil || c.ID != core.ID {
		t.Fatalf("first message %+v, want the core crash", c)
	}
	update(1, 134, "Error")
	linked := next(30 * time.Second)
	if linked == nil || linked.Termination == nil || linked.Termination.CoreID != core.ID || linked.Signal.Name != "SIGABRT" {
		t.Fatalf("termination of the core's run: %+v", linked)
	}
	update(2, 137, "OOMKilled")
	oom := next(30 * time.Second)
	if oom == nil || oom.Termination == nil || oom.Termination.Reason != "OOMKilled" || oom.Termination.CoreID != "" ||
		oom.Container.ID != runID(2) || oom.Container.Pod != "db-0" || oom.Signal.Number != 9 {
		t.Fatalf("OOM record %+v", oom)
	}
	// The record is published before its manifest is stored: a stored
	// manifest means a published record, not the other way round.
	testkit.WaitFor(t, "the OOM record's manifest", func() bool {
		_, err := store.Stat(ctx, corepipe.ManifestKey(oom))
		return err == nil
	})
	if m := manifest(t, store, oom); m.ID != oom.ID || m.Core.Dropped == "" {
		t.Errorf("stored OOM manifest %+v", m)
	}
	testkit.WaitFor(t, "the OOM annotation", func() bool {
		p, err := client.CoreV1().Pods("shop").Get(ctx, "db-0", metav1.GetOptions{})
		return err == nil && p.Annotations[kube.AnnotationCrashID] == oom.ID
	})
	stop()

	// A restarted agent lists the pod again with the OOM kill in its status.
	log := &testkit.Messages{}
	cfg.Logger = slog.New(log)
	runWatcher(t, cfg, ag)
	testkit.WaitFor(t, "the restarted watcher to find the record", func() bool { return log.Count("termination already recorded") == 1 })
	if c := next(500 * time.Millisecond); c != nil {
		t.Errorf("recorded again after a restart: %+v", c)
	}
}

// enricher and observer let the agent be built before the watcher it hooks
// into, as the watcher records through the agent.
type enricher struct{ w **kube.Watcher }

func (e enricher) Enrich(ctx context.Context, c *corepipe.Crash) { (*e.w).Enrich(ctx, c) }

type observer struct{ w **kube.Watcher }

func (o observer) Shipped(ctx context.Context, c *corepipe.Crash) { (*o.w).Shipped(ctx, c) }

func writeEntry(t *testing.T, spoolDir string, c *corepipe.Crash) {
	t.Helper()
	dir := filepath.Join(spoolDir, c.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, spool.ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func manifest(t *testing.T, store corepipe.BlobStore, c *corepipe.Crash) *corepipe.Crash {
	t.Helper()
	var out corepipe.Crash
	if err := json.Unmarshal(blobtest.Read(t, store, corepipe.ManifestKey(c)), &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

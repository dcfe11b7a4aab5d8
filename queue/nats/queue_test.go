package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// TestMain fails the package when any goroutine outlives the tests: every
// Queue is closed and every server shut down by then, so a leftover is a
// leak of the adapter (or of a server's shutdown).
func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}

func open(t *testing.T, url string, opts ...natsq.Option) *natsq.Queue {
	t.Helper()
	q, err := natsq.Open(context.Background(), url, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := q.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return q
}

func newCrash(node string) *corepipe.Crash {
	now := time.Now()
	return &corepipe.Crash{
		Schema:     corepipe.ManifestSchema,
		ID:         corepipe.NewID(now),
		CapturedAt: now.UTC().Truncate(time.Millisecond),
		Node:       node,
		Process:    corepipe.Process{PID: 4242, Exe: "/usr/bin/victim"},
		Signal:     corepipe.Signal{Number: 6, Name: "SIGABRT"},
	}
}

func publishCrash(t *testing.T, q *natsq.Queue, c *corepipe.Crash) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.PublishCrash(ctx, c); err != nil {
		t.Fatalf("PublishCrash: %v", err)
	}
}

func crashes(t *testing.T, q *natsq.Queue, durable string) corepipe.Consumer {
	t.Helper()
	c, err := q.Crashes(context.Background(), durable)
	if err != nil {
		t.Fatalf("Crashes(%q): %v", durable, err)
	}
	return c
}

// next waits up to d for a message.
// oneQueued publishes crash to a queue, opened with opts, of a fresh
// embedded server, and returns the server and the analyzers' consumer.
func oneQueued(t *testing.T, crash *corepipe.Crash, opts ...natsq.Option) (*natsq.Embedded, corepipe.Consumer) {
	t.Helper()
	srv := natstest.StartEmbedded(t)
	q := open(t, srv.ClientURL(), opts...)
	publishCrash(t, q, crash)
	return srv, crashes(t, q, "analyzer")
}

func next(t *testing.T, c corepipe.Consumer, d time.Duration) corepipe.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := c.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return m
}

// expectNone checks that nothing is delivered within d.
func expectNone(t *testing.T, c corepipe.Consumer, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := c.Next(ctx)
	if err == nil {
		t.Fatalf("Next delivered %s (delivery %d), want nothing", m.Data(), m.Deliveries())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v, want %v", err, context.DeadlineExceeded)
	}
}

func crashID(t *testing.T, m corepipe.Message) string {
	t.Helper()
	var c corepipe.Crash
	if err := json.Unmarshal(m.Data(), &c); err != nil {
		t.Fatalf("message is not a crash: %v: %s", err, m.Data())
	}
	return c.ID
}

func ack(t *testing.T, m corepipe.Message) {
	t.Helper()
	if err := m.Ack(context.Background()); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

// inspect opens a plain JetStream client, to look at the streams the way an
// operator with the nats CLI would.
func inspect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	return natstest.JetStream(t, url)
}

func streamMsgs(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestOpenCreatesStreams(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	open(t, srv.ClientURL(), natsq.DuplicateWindow(time.Hour), natsq.ReportsMaxAge(48*time.Hour))
	js := inspect(t, srv.ClientURL())
	for _, want := range []jetstream.StreamConfig{
		{Name: natsq.CoresStream, Subjects: []string{"corepipe.cores.>"}, Retention: jetstream.WorkQueuePolicy, Duplicates: time.Hour},
		{Name: natsq.ReportsStream, Subjects: []string{"corepipe.reports.>"}, Retention: jetstream.LimitsPolicy, MaxAge: 48 * time.Hour},
	} {
		s, err := js.Stream(context.Background(), want.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", want.Name, err)
		}
		got := s.CachedInfo().Config
		if fmt.Sprint(got.Subjects) != fmt.Sprint(want.Subjects) || got.Retention != want.Retention ||
			got.Storage != jetstream.FileStorage ||
			(want.Duplicates != 0 && got.Duplicates != want.Duplicates) || got.MaxAge != want.MaxAge {
			t.Errorf("stream %s: subjects %v retention %v storage %v duplicates %v max age %v; want %v %v file %v %v",
				want.Name, got.Subjects, got.Retention, got.Storage, got.Duplicates, got.MaxAge,
				want.Subjects, want.Retention, want.Duplicates, want.MaxAge)
		}
	}
	// A second Open with the same options finds the streams as they are.
	open(t, srv.ClientURL(), natsq.DuplicateWindow(time.Hour), natsq.ReportsMaxAge(48*time.Hour))
}

func TestPublishCrashDeduplicatesByID(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	q := open(t, srv.ClientURL())
	c := newCrash("node-1.example.com")
	publishCrash(t, q, c)
	publishCrash(t, q, c)

	js := inspect(t, srv.ClientURL())
	if n := streamMsgs(t, js, natsq.CoresStream); n != 1 {
		t.Fatalf("stream holds %d messages after publishing one crash twice, want 1", n)
	}
	s, err := js.Stream(context.Background(), natsq.CoresStream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetLastMsgForSubject(context.Background(), "corepipe.cores.node-1_example_com")
	if err != nil {
		t.Fatalf("no message on the node's subject: %v", err)
	}
	if got := raw.Header.Get(jetstream.MsgIDHeader); got != c.ID {
		t.Errorf("Nats-Msg-Id = %q, want the crash id %q", got, c.ID)
	}

	m := next(t, crashes(t, q, "analyzer"), 5*time.Second)
	var got corepipe.Crash
	if err := json.Unmarshal(m.Data(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != c.ID || got.Node != c.Node || !got.CapturedAt.Equal(c.CapturedAt) || got.Signal != c.Signal {
		t.Errorf("consumed %+v, want %+v", got, c)
	}
	if m.Deliveries() != 1 {
		t.Errorf("Deliveries() = %d on the first delivery, want 1", m.Deliveries())
	}
}

func TestPublishRejectsBadInput(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	q := open(t, srv.ClientURL())
	ctx := context.Background()
	for name, err := range map[string]error{
		"nil crash":      q.PublishCrash(ctx, nil),
		"bad crash id":   q.PublishCrash(ctx, &corepipe.Crash{ID: "../x", Node: "n"}),
		"nil report":     q.PublishReport(ctx, nil),
		"bad report id":  q.PublishReport(ctx, &corepipe.Report{ID: "a.b"}),
		"durable is dot": func() error { _, err := q.Crashes(ctx, "a.b"); return err }(),
		"empty durable":  func() error { _, err := q.Reports(ctx, ""); return err }(),
	} {
		if !errors.Is(err, corepipe.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestSubjectToken(t *testing.T) {
	for in, want := range map[string]string{
		"node-1":                 "node-1",
		"ip-10-0-0-1.ec2.intern": "ip-10-0-0-1_ec2_intern",
		"a b\tc":                 "a_b_c",
		"*":                      "_",
		"a.>":                    "a__",
		"":                       "_",
		"nœud":                   "n_ud",
	} {
		if got := natsq.SubjectToken(in); got != want {
			t.Errorf("SubjectToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAckRemovesFromWorkQueue(t *testing.T) {
	srv, c := oneQueued(t, newCrash("n1"))
	ack(t, next(t, c, 5*time.Second))

	if n := streamMsgs(t, inspect(t, srv.ClientURL()), natsq.CoresStream); n != 0 {
		t.Errorf("stream holds %d messages after Ack, want 0", n)
	}
	expectNone(t, c, 300*time.Millisecond)
}

func TestNakRedelivers(t *testing.T) {
	crash := newCrash("n1")
	_, c := oneQueued(t, crash)

	if err := next(t, c, 5*time.Second).Nak(context.Background(), 0); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	m := next(t, c, 5*time.Second)
	if id := crashID(t, m); id != crash.ID || m.Deliveries() != 2 {
		t.Fatalf("after Nak got %s delivery %d, want %s delivery 2", id, m.Deliveries(), crash.ID)
	}

	if err := m.Nak(context.Background(), 700*time.Millisecond); err != nil {
		t.Fatalf("Nak with delay: %v", err)
	}
	expectNone(t, c, 300*time.Millisecond)
	if m := next(t, c, 5*time.Second); m.Deliveries() != 3 {
		t.Fatalf("after delayed Nak: delivery %d, want 3", m.Deliveries())
	}
}

func TestInProgressDefersRedelivery(t *testing.T) {
	_, c := oneQueued(t, newCrash("n1"), natsq.AckWait(time.Second))
	m := next(t, c, 5*time.Second)

	// Twice AckWait of work, reporting progress every quarter of it.
	for range 8 {
		if err := m.InProgress(context.Background()); err != nil {
			t.Fatalf("InProgress: %v", err)
		}
		expectNone(t, c, 250*time.Millisecond)
	}
	// Silence: the crash goes to another analyzer once AckWait has passed.
	if m := next(t, c, 5*time.Second); m.Deliveries() != 2 {
		t.Fatalf("after AckWait: delivery %d, want 2", m.Deliveries())
	}
}

func TestMaxDeliverStopsRedelivery(t *testing.T) {
	_, c := oneQueued(t, newCrash("n1"), natsq.MaxDeliver(3))
	for want := 1; want <= 3; want++ {
		m := next(t, c, 5*time.Second)
		if m.Deliveries() != want {
			t.Fatalf("delivery %d, want %d", m.Deliveries(), want)
		}
		if err := m.Nak(context.Background(), 0); err != nil {
			t.Fatalf("Nak: %v", err)
		}
	}
	expectNone(t, c, 500*time.Millisecond)
}

func TestTermRemovesFromWorkQueue(t *testing.T) {
	srv, c := oneQueued(t, newCrash("n1"))
	if err := next(t, c, 5*time.Second).Term(context.Background()); err != nil {
		t.Fatalf("Term: %v", err)
	}
	expectNone(t, c, 300*time.Millisecond)
	if n := streamMsgs(t, inspect(t, srv.ClientURL()), natsq.CoresStream); n != 0 {
		t.Errorf("stream holds %d messages after Term, want 0", n)
	}
}

func TestDurableResumesAfterReopen(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	q, err := natsq.Open(context.Background(), srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	want := []*corepipe.Crash{newCrash("n1"), newCrash("n2"), newCrash("n3")}
	for _, c := range want {
		publishCrash(t, q, c)
	}
	m := next(t, crashes(t, q, "analyzer"), 5*time.Second)
	if id := crashID(t, m); id != want[0].ID {
		t.Fatalf("first crash %s, want %s", id, want[0].ID)
	}
	ack(t, m)
	if err := q.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}

	c := crashes(t, open(t, srv.ClientURL()), "analyzer")
	for _, w := range want[1:] {
		m := next(t, c, 5*time.Second)
		if id := crashID(t, m); id != w.ID || m.Deliveries() != 1 {
			t.Fatalf("after reopening got %s delivery %d, want %s delivery 1", id, m.Deliveries(), w.ID)
		}
		ack(t, m)
	}
	expectNone(t, c, 300*time.Millisecond)
}

func TestReportsReplayToNewDurable(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	q := open(t, srv.ClientURL())
	ctx := context.Background()

	var published []string
	for i := range 3 {
		c := newCrash(fmt.Sprintf("n%d", i))
		r := corepipe.NewReport(c)
		r.Goroutines = []corepipe.Goroutine{{ID: 1, Status: "running"}}
		for range 2 { // a retry is dropped as a duplicate
			if err := q.PublishReport(ctx, r); err != nil {
				t.Fatalf("PublishReport: %v", err)
			}
		}
		published = append(published, r.ID+" "+string(r.Status))
		if i == 0 { // a re-analysis with a new status is not
			r.Status = corepipe.StatusAnalyzed
			if err := q.PublishReport(ctx, r); err != nil {
				t.Fatalf("PublishReport: %v", err)
			}
			published = append(published, r.ID+" "+string(r.Status))
			// nor is a re-analysis with the same status
			r.Revision = 1
			if err := q.PublishReport(ctx, r); err != nil {
				t.Fatalf("PublishReport: %v", err)
			}
			published = append(published, r.ID+" "+string(r.Status))
		}
	}

	readAll := func(durable string) []string {
		c, err := q.Reports(ctx, durable)
		if err != nil {
			t.Fatalf("Reports(%q): %v", durable, err)
		}
		var got []string
		for range published {
			m := next(t, c, 5*time.Second)
			var r corepipe.Report
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				t.Fatal(err)
			}
			if r.Goroutines != nil {
				t.Errorf("report %s carries goroutines; the queue carries summaries", r.ID)
			}
			got = append(got, r.ID+" "+string(r.Status))
			ack(t, m)
		}
		expectNone(t, c, 300*time.Millisecond)
		return got
	}
	for _, durable := range []string{"index", "notifier"} {
		if got := readAll(durable); fmt.Sprint(got) != fmt.Sprint(published) {
			t.Errorf("durable %s read %v, want %v", durable, got, published)
		}
	}
}

func TestPublishFailsWhileServerDown(t *testing.T) {
	srv, err := natsq.StartEmbedded(natsq.EmbeddedOptions{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	q := open(t, srv.ClientURL())
	srv.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err = q.PublishCrash(ctx, newCrash("n1"))
	if !errors.Is(err, corepipe.ErrUnavailable) {
		t.Fatalf("PublishCrash with the server down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("PublishCrash took %s with a 1s context", d)
	}
}

func TestOpenWhileServerDown(t *testing.T) {
	port := natstest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	if _, err := natsq.Open(context.Background(), url); !errors.Is(err, corepipe.ErrUnavailable) {
		t.Fatalf("Open without a server: %v, want ErrUnavailable", err)
	}

	q := open(t, url, natsq.RetryOnFailedConnect(true))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	crash := newCrash("n1")
	if err := q.PublishCrash(ctx, crash); !errors.Is(err, corepipe.ErrUnavailable) {
		t.Fatalf("PublishCrash before the server is up: %v, want ErrUnavailable", err)
	}

	srv, err := natsq.StartEmbedded(natsq.EmbeddedOptions{StoreDir: t.TempDir(), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	// The agent's retry loop: the client reconnects on its own schedule.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := q.PublishCrash(ctx, crash)
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, corepipe.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("PublishCrash after the server came up: %v", err)
		}
	}
	m := next(t, crashes(t, q, "analyzer"), 5*time.Second)
	if id := crashID(t, m); id != crash.ID {
		t.Fatalf("consumed %s, want %s", id, crash.ID)
	}
	ack(t, m)
}

func TestCloseWithoutEverConnecting(t *testing.T) {
	url := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t))
	q, err := natsq.Open(context.Background(), url, natsq.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNextReturnsOnCancelAndClose(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	q, err := natsq.Open(context.Background(), srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	c := crashes(t, q, "analyzer")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.Next(ctx)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Next after cancel: %v, want %v", err, context.Canceled)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Next did not return after its context was cancelled")
	}

	go func() {
		_, err := c.Next(context.Background())
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := q.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Errorf("Next after Close: %v, want %v", err, nats.ErrConnectionClosed)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Next did not return after Close")
	}
}

func TestConsumerRecreatedWhenDeleted(t *testing.T) {
	srv := natstest.StartEmbedded(t)
	q := open(t, srv.ClientURL())
	c := crashes(t, q, "analyzer")
	js := inspect(t, srv.ClientURL())

	// Deleted between pulls: the next pull finds no consumer.
	if err := js.DeleteConsumer(context.Background(), natsq.CoresStream, "analyzer"); err != nil {
		t.Fatal(err)
	}
	crash := newCrash("n1")
	publishCrash(t, q, crash)
	m := next(t, c, 10*time.Second)
	if id := crashID(t, m); id != crash.ID {
		t.Fatalf("consumed %s, want %s", id, crash.ID)
	}
	ack(t, m)

	// Deleted under a pending pull: the server ends the pull.
	got := make(chan corepipe.Message, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := c.Next(ctx)
		if err != nil {
			t.Errorf("Next: %v", err)
		}
		got <- m
	}()
	time.Sleep(200 * time.Millisecond)
	if err := js.DeleteConsumer(context.Background(), natsq.CoresStream, "analyzer"); err != nil {
		t.Fatal(err)
	}
	crash = newCrash("n1")
	publishCrash(t, q, crash)
	if m := <-got; m != nil {
		if id := crashID(t, m); id != crash.ID {
			t.Fatalf("consumed %s, want %s", id, crash.ID)
		}
		ack(t, m)
	}
}

// TestExternalServerRestart runs the queue against a real nats-server process
// stopped and killed under it: what was published survives, the client
// reconnects by itself, and publishing fails cleanly while the server is away.
func TestExternalServerRestart(t *testing.T) {
	srv := natstest.StartExternal(t)
	q := open(t, srv.URL())
	c := crashes(t, q, "analyzer")
	want := []*corepipe.Crash{newCrash("n1"), newCrash("n2"), newCrash("n3")}
	for _, crash := range want[:2] {
		publishCrash(t, q, crash)
	}
	m := next(t, c, 5*time.Second)
	if id := crashID(t, m); id != want[0].ID {
		t.Fatalf("consumed %s, want %s", id, want[0].ID)
	}
	ack(t, m)

	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := q.PublishCrash(ctx, want[2]); !errors.Is(err, corepipe.ErrUnavailable) {
		t.Fatalf("PublishCrash with the server stopped: %v, want ErrUnavailable", err)
	}
	srv.Restart()

	m = next(t, c, 15*time.Second)
	if id := crashID(t, m); id != want[1].ID {
		t.Fatalf("after restart consumed %s, want %s", id, want[1].ID)
	}
	ack(t, m)

	// The failed publish above may have reached the server from the
	// reconnect buffer; republishing must still leave exactly one copy.
	srv.Kill()
	srv.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := q.PublishCrash(ctx, want[2])
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, corepipe.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("PublishCrash after restart: %v", err)
		}
	}
	m = next(t, c, 15*time.Second)
	if id := crashID(t, m); id != want[2].ID {
		t.Fatalf("consumed %s, want %s", id, want[2].ID)
	}
	ack(t, m)
	expectNone(t, c, 300*time.Millisecond)
}

// TestConsumerBeforeJetStream: a part started while NATS cannot answer yet
// (a cluster electing its leaders, a server restarting) gets its consumer
// and receives once the server is there, instead of exiting at start (found
// by e2e.TestFleet: analyzers and an API replica exited on "create stream
// COREPIPE_REPORTS: unavailable").
func TestConsumerBeforeJetStream(t *testing.T) {
	port := natstest.FreePort(t)
	q, err := natsq.Open(context.Background(), fmt.Sprintf("nats://127.0.0.1:%d", port), natsq.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	cons, err := q.Reports(ctx, "late")
	cancel()
	if err != nil {
		t.Fatalf("Reports before the server: %v", err)
	}
	srv, err := natsq.StartEmbedded(natsq.EmbeddedOptions{StoreDir: t.TempDir(), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	pub := open(t, srv.ClientURL())
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pub.PublishReport(ctx, &corepipe.Report{ID: corepipe.NewID(time.Now()), Status: corepipe.StatusAnalyzed}); err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(ctx)
	if err != nil {
		t.Fatalf("Next once the server is up: %v", err)
	}
	msg.Ack(ctx)
}

package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	"github.com/corepipe/corepipe/notify"
	"github.com/corepipe/corepipe/notify/slack"
	natsq "github.com/corepipe/corepipe/queue/nats"
	"github.com/corepipe/corepipe/sqlite"
)

// TestMain fails the package when a goroutine outlives the tests: every
// notifier, queue and server is stopped by then.
func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}

const (
	ui         = "https://crashes.example"
	secretPath = "/services/T0000/B0000/w3bh00kS3cr3t"
	botToken   = "xoxb-42-b0tS3cr3t"
	durable    = "notifier"
	ts         = "1700000000.000100"
)

var t0 = time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)

// fakeSlack stands in for Slack: it records every accepted message and
// answers the scripted failures first.
type fakeSlack struct {
	mu       sync.Mutex
	script   []int // status codes to answer before accepting
	requests int
	payloads []map[string]any
}

func (f *fakeSlack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	bot := r.URL.Path == "/api/chat.postMessage"
	if !bot && r.URL.Path != secretPath || bot && r.Header.Get("Authorization") != "Bearer "+botToken {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "no_service")
		return
	}
	if len(f.script) > 0 {
		code := f.script[0]
		f.script = f.script[1:]
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(code)
		return
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "invalid_payload")
		return
	}
	f.payloads = append(f.payloads, p)
	if bot {
		fmt.Fprintf(w, `{"ok":true,"ts":%q}`, fmt.Sprintf("1700000000.%06d", 100*len(f.payloads)))
		return
	}
	io.WriteString(w, "ok")
}

func (f *fakeSlack) got() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.payloads...)
}

func (f *fakeSlack) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func (f *fakeSlack) setScript(codes ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script = codes
}

// harness is one deployment: a NATS server, Slack, a state file and a
// clock that outlive restarts of the notifier.
type harness struct {
	t        *testing.T
	nats     string
	pub      *natsq.Queue
	slack    *fakeSlack
	slackURL string
	state    string
	clock    *testkit.Clock
	logs     *testkit.SyncBuffer
	bot      bool
	// triage, when set, is the notifier's source of triage decisions.
	triage notify.TriageSource
	// owners, when set, are the notifier's owners rules.
	owners *corepipe.OwnerRules
}

func newHarness(t *testing.T, bot bool) *harness {
	emb := natstest.StartEmbedded(t)
	h := &harness{
		t:     t,
		nats:  emb.ClientURL(),
		slack: &fakeSlack{},
		state: filepath.Join(t.TempDir(), "notifier.db"),
		clock: testkit.NewClock(t0),
		logs:  &testkit.SyncBuffer{},
		bot:   bot,
	}
	srv := httptest.NewServer(h.slack)
	t.Cleanup(srv.Close)
	h.slackURL = srv.URL
	pub, err := natsq.Open(context.Background(), h.nats)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close(context.Background()) })
	h.pub = pub
	// Every test drives failures through the notifier's log: none may
	// leak the webhook or the token.
	t.Cleanup(func() {
		logs := h.logs.String()
		for _, secret := range []string{secretPath, "w3bh00kS3cr3t", botToken, "b0tS3cr3t"} {
			if strings.Contains(logs, secret) {
				t.Errorf("the log contains the secret %q:\n%s", secret, logs)
			}
		}
	})
	return h
}

// notifier is one run of the notifier process.
type notifier struct {
	reg  *prometheus.Registry
	stop func()
}

// start runs a notifier as a new process would: its own NATS connection,
// the state file and durable of the deployment. wrap, when set, stands
// between the notifier and its consumer.
func (h *harness) start(wrap func(corepipe.Consumer) corepipe.Consumer) *notifier {
	t := h.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	q, err := natsq.Open(ctx, h.nats)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := q.Reports(ctx, durable)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		cons = wrap(cons)
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	scfg := slack.Config{UIURL: ui, MinInterval: 10 * time.Millisecond, Logger: log, Registerer: reg}
	if h.bot {
		scfg.Token, scfg.Channel, scfg.APIURL = botToken, "C0CRASH", h.slackURL+"/api"
	} else {
		scfg.WebhookURL = h.slackURL + secretPath
	}
	sender, err := slack.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.OpenNotifyStore(h.state)
	if err != nil {
		t.Fatal(err)
	}
	n, err := notify.Open(notify.Config{
		Consumer:   cons,
		Sender:     sender,
		Store:      store,
		Triage:     h.triage,
		Owners:     h.owners,
		Policy:     notify.Policy{Cooldown: time.Hour, SpikeCount: 20, SpikeWindow: 10 * time.Minute, DigestInterval: time.Hour},
		Now:        h.clock.Now,
		Poll:       10 * time.Millisecond,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			if err := n.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			q.Close(context.Background())
		})
	}
	t.Cleanup(stop)
	return &notifier{reg: reg, stop: stop}
}

// metric sums a metric over its labels, filtered by label=value pairs.
func (n *notifier) metric(name string, labels ...string) float64 {
	mfs, err := n.reg.Gather()
	if err != nil {
		panic(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// settle advances the clock past a digest interval and waits until the
// digest has been made and everything queued has been delivered.
func (h *harness) settle(n *notifier) {
	h.t.Helper()
	now := h.clock.Advance(time.Hour)
	testkit.WaitFor(h.t, "the digest", func() bool {
		return n.metric("corepipe_notifier_last_digest_timestamp_seconds") == float64(now.UnixNano())/1e9
	})
	testkit.WaitFor(h.t, "an empty outbox", func() bool { return n.metric("corepipe_notifier_outbox_messages") == 0 })
}

// report is a nil dereference in build version of the workload, captured
// at; its crashing goroutine starts with the runtime's panic frames.
func report(at time.Time, signature, version string) *corepipe.Report {
	return &corepipe.Report{
		Schema: corepipe.ReportSchema, ID: corepipe.NewID(at), Status: corepipe.StatusAnalyzed, CapturedAt: at,
		Node:              "node-1",
		Process:           corepipe.Process{PID: 4242, Exe: "/app/api"},
		Container:         &corepipe.Container{Namespace: "prod", Pod: "api-7f9c", Container: "api", Image: "registry.example/api:" + version},
		Signal:            &corepipe.Signal{Number: 6, Name: "SIGABRT"},
		Fault:             &corepipe.Fault{Signal: 11, Name: "SIGSEGV", Code: 1, CodeName: "SEGV_MAPERR", Address: "0x0", PC: "0x4a1b2c"},
		Panic:             &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: "runtime error: invalid memory address or nil pointer dereference"},
		Go:                &corepipe.GoInfo{MainVersion: version},
		Signature:         signature,
		Title:             "nil pointer dereference in main.(*server).retries",
		CrashingGoroutine: 1,
		Goroutines: []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{
			{Function: "panic", File: "/go/src/runtime/panic.go", Line: 115},
			{Function: "runtime.sigpanic", File: "/go/src/runtime/signal_unix.go", Line: 925},
			{Function: "main.(*server).retries", File: "/src/api/main.go", Line: 15},
			{Function: "main.handle", File: "/src/api/main.go", Line: 18},
			{Function: "main.serve", File: "/src/api/main.go", Line: 21},
			{Function: "main.main", File: "/src/api/main.go", Line: 34},
		}}},
	}
}

const sigA, sigB = "gocrash/v1:aaaa", "gocrash/v1:bbbb"

func (h *harness) publish(rs ...*corepipe.Report) {
	h.t.Helper()
	for _, r := range rs {
		if err := h.pub.PublishReport(context.Background(), r); err != nil {
			h.t.Fatal(err)
		}
	}
}

// texts gathers every text of a payload's blocks, in order.
func texts(p map[string]any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["text"].(string); ok {
				out = append(out, s)
			}
			for k, c := range v {
				if k != "text" || !isString(c) {
					walk(c)
				}
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(p["blocks"])
	return out
}

func isString(v any) bool { _, ok := v.(string); return ok }

func header(p map[string]any) string {
	blocks, _ := p["blocks"].([]any)
	if len(blocks) == 0 {
		return ""
	}
	b, _ := blocks[0].(map[string]any)
	text, _ := b["text"].(map[string]any)
	s, _ := text["text"].(string)
	return s
}

func TestNewGroupIsOneMessage(t *testing.T) {
	h := newHarness(t, false)
	n := h.start(nil)
	r := report(t0.Add(-time.Minute), sigA, "v1.2.3")
	h.publish(r)
	testkit.WaitFor(t, "the alert", func() bool { return len(h.slack.got()) == 1 })
	h.settle(n)
	n.stop()

	got := h.slack.got()
	if len(got) != 1 {
		t.Fatalf("%d messages, want 1", len(got))
	}
	p := got[0]
	if fallback := p["text"]; fallback != "New crash: nil pointer dereference in main.(*server).retries (prod/api-7f9c on node-1)" {
		t.Errorf("fallback text %q", fallback)
	}
	all := strings.Join(texts(p), "\n")
	for _, want := range []string{
		"New crash: nil pointer dereference in main.(*server).retries",
		"panic: runtime error: invalid memory address or nil pointer dereference",
		"Signal: SIGSEGV SEGV_MAPERR at 0x0, pc 0x4a1b2c",
		"Pod: prod/api-7f9c (api)",
		"Image: registry.example/api:v1.2.3",
		"Node: node-1",
		"Count: 1, first seen 2026-11-03 11:59 UTC",
		// The runtime's panic frames are cut: the stack starts in the
		// program's own code.
		"```\nmain.(*server).retries\n\t/src/api/main.go:15\nmain.handle\n\t/src/api/main.go:18\nmain.serve\n\t/src/api/main.go:21\nmain.main\n\t/src/api/main.go:34\n```",
		"<" + ui + "/crashes/" + r.ID + "|Crash " + r.ID + ">",
		"<" + ui + "/groups/gocrash%2Fv1:aaaa|Group (1 crash)>",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("message lacks %q:\n%s", want, all)
		}
	}
	if n.metric("corepipe_notifier_messages_sent_total", "kind", "new") != 1 {
		t.Error("sent metric does not count the alert")
	}
}

func TestCrashLoopIsOneMessageAndOneSummary(t *testing.T) {
	for _, bot := range []bool{false, true} {
		t.Run(map[bool]string{false: "webhook", true: "bot"}[bot], func(t *testing.T) {
			h := newHarness(t, bot)
			n := h.start(nil)
			var rs []*corepipe.Report
			for i := range 50 {
				r := report(t0.Add(time.Duration(i)*time.Second), sigA, "v1.2.3")
				r.Node = fmt.Sprintf("node-%d", i%3)
				rs = append(rs, r)
			}
			h.publish(rs...)
			testkit.WaitFor(t, "50 crashes handled", func() bool {
				return n.metric("corepipe_notifier_crashes_suppressed_total") == 49
			})
			// The 21st crash within ten minutes was a spike, held back by
			// the cool-down.
			if c := n.metric("corepipe_notifier_crashes_suppressed_total", "reason", "cooldown"); c != 1 {
				t.Errorf("%v spikes held back, want 1", c)
			}
			h.settle(n)
			h.settle(n) // a second interval with nothing new sends nothing
			n.stop()

			got := h.slack.got()
			if len(got) != 2 {
				t.Fatalf("%d messages, want the alert and one summary:\n%v", len(got), got)
			}
			if hd := header(got[0]); !strings.HasPrefix(hd, "New crash: ") {
				t.Errorf("first message %q, want the alert", hd)
			}
			summary := strings.Join(texts(got[1]), "\n")
			last := rs[49]
			if bot {
				if got[1]["thread_ts"] != ts {
					t.Errorf("summary in thread %v, want the alert's %s", got[1]["thread_ts"], ts)
				}
				if !strings.Contains(summary, "49 more crashes since 2026-11-03 12:00 UTC. Last 2026-11-03 12:00 UTC on node-1 (prod/api-7f9c); 50 in all") {
					t.Errorf("thread reply:\n%s", summary)
				}
			} else {
				if hd := header(got[1]); hd != "Crash digest: 49 crashes in 1 group" {
					t.Errorf("digest header %q", hd)
				}
				if !strings.Contains(summary, "49 × nil pointer dereference in main.(*server).retries\nLast 2026-11-03 12:00 UTC on node-1 (prod/api-7f9c); 50 in all") {
					t.Errorf("digest:\n%s", summary)
				}
			}
			if !strings.Contains(summary, "<"+ui+"/crashes/"+last.ID+"|Latest crash>") {
				t.Errorf("summary does not link the latest crash %s:\n%s", last.ID, summary)
			}
		})
	}
}

func TestRetryAfterDeliversOnce(t *testing.T) {
	h := newHarness(t, false)
	h.slack.setScript(http.StatusTooManyRequests, http.StatusServiceUnavailable)
	n := h.start(nil)
	h.publish(report(t0, sigA, "v1"))
	testkit.WaitFor(t, "the alert", func() bool { return len(h.slack.got()) == 1 })
	h.settle(n)
	n.stop()
	if len(h.slack.got()) != 1 || h.slack.requestCount() != 3 {
		t.Errorf("%d messages in %d requests, want 1 after a 429 and a 503", len(h.slack.got()), h.slack.requestCount())
	}
	for _, result := range []string{"rate_limited", "server_error", "ok"} {
		if n.metric("corepipe_slack_requests_total", "result", result) != 1 {
			t.Errorf("corepipe_slack_requests_total{result=%q} is not 1", result)
		}
	}
	if !strings.Contains(h.logs.String(), "slack delivery failed, retrying") {
		t.Error("the retries were not logged")
	}
}

func TestCrashTextIsEscaped(t *testing.T) {
	h := newHarness(t, false)
	n := h.start(nil)
	r := report(t0, sigA, "v1")
	const evil = "<!channel> @here <@U024BE7LH> <script>x</script> *bold* `tick` ```fence``` [a](https://evil.example) <https://evil.example|click>"
	r.Title, r.Panic.Message, r.Container.Pod = evil, evil, evil
	r.Goroutines[0].Frames[2].Function = "main.```<!here>"
	h.publish(r)
	testkit.WaitFor(t, "the alert", func() bool { return len(h.slack.got()) == 1 })
	n.stop()

	p := h.slack.got()[0]
	var all []string
	for _, s := range append(texts(p), p["text"].(string)) {
		all = append(all, strings.ReplaceAll(s, "<"+ui+"/", "{ui-link}"))
	}
	joined := strings.Join(all, "\n")
	for _, bad := range []string{"<!channel>", "<!here>", "<@U024BE7LH>", "<script>", "<https://evil", " @here"} {
		if strings.Contains(joined, bad) {
			t.Errorf("message contains %q:\n%s", bad, joined)
		}
	}
	if !strings.Contains(joined, "&lt;!channel&gt;") || !strings.Contains(joined, "*bold*") {
		t.Errorf("the crash text should be shown, escaped, not dropped:\n%s", joined)
	}
	for _, s := range all {
		if strings.HasPrefix(s, "```") && strings.Count(s, "```") != 2 {
			t.Errorf("code block broken out of: %q", s)
		}
	}
}

// ackless makes every ack a quick nak: the notifier dies, as far as the
// stream knows, after each decision and before its ack.
type ackless struct{ corepipe.Consumer }

func (a ackless) Next(ctx context.Context) (corepipe.Message, error) {
	m, err := a.Consumer.Next(ctx)
	if err != nil {
		return nil, err
	}
	return naker{m}, nil
}

type naker struct{ corepipe.Message }

func (m naker) Ack(ctx context.Context) error { return m.Nak(ctx, 50*time.Millisecond) }

func TestRestartSendsNothingTwice(t *testing.T) {
	h := newHarness(t, false)
	first := h.start(func(c corepipe.Consumer) corepipe.Consumer { return ackless{c} })
	h.publish(report(t0, sigA, "v1"), report(t0.Add(time.Second), sigA, "v1"), report(t0.Add(2*time.Second), sigB, "v1"))
	testkit.WaitFor(t, "both alerts", func() bool { return len(h.slack.got()) == 2 })
	testkit.WaitFor(t, "redeliveries", func() bool { return first.metric("corepipe_notifier_reports_duplicate_total") >= 3 })
	first.stop()

	// Slack fails while the second run handles a new group: the decision
	// is kept, the report acked, the message waits.
	h.slack.setScript(500, 500, 500, 500, 500, 500, 500, 500, 500, 500)
	second := h.start(nil)
	testkit.WaitFor(t, "the unacked reports again", func() bool { return second.metric("corepipe_notifier_reports_duplicate_total") >= 3 })
	h.publish(report(t0.Add(3*time.Second), "gocrash/v1:cccc", "v1"))
	testkit.WaitFor(t, "the third alert queued", func() bool { return second.metric("corepipe_notifier_outbox_messages") == 1 })
	second.stop()
	h.slack.setScript()

	third := h.start(nil)
	testkit.WaitFor(t, "the queued alert", func() bool { return len(h.slack.got()) == 3 })
	h.settle(third)
	third.stop()

	got := h.slack.got()
	var headers []string
	for _, p := range got {
		headers = append(headers, header(p))
	}
	if len(got) != 4 {
		t.Fatalf("messages %q, want 3 alerts and the digest of A's second crash", headers)
	}
	crashes := map[string]int{}
	for _, p := range got[:3] {
		for _, s := range texts(p) {
			if i := strings.Index(s, "/crashes/"); i >= 0 {
				crashes[s[i+9:i+9+26]]++
			}
		}
	}
	if len(crashes) != 3 {
		t.Errorf("the alerts name crashes %v, want three different ones", crashes)
	}
	if d := strings.Join(texts(got[3]), "\n"); header(got[3]) != "Crash digest: 1 crash in 1 group" || !strings.Contains(d, "1 × ") {
		t.Errorf("digest %q:\n%s", header(got[3]), d)
	}
	if third.metric("corepipe_notifier_reports_duplicate_total") != 0 {
		t.Error("the third run saw reports again: the second did not ack them")
	}
}

func TestRegressionAfterQuietPeriod(t *testing.T) {
	h := newHarness(t, false)
	n := h.start(nil)
	h.publish(report(t0, sigA, "v1.0.0"))
	testkit.WaitFor(t, "the alert", func() bool { return len(h.slack.got()) == 1 })
	later := h.clock.Advance(3 * 24 * time.Hour)
	h.publish(report(later.Add(-time.Minute), sigA, "v1.1.0"))
	testkit.WaitFor(t, "the regression", func() bool { return len(h.slack.got()) == 2 })
	n.stop()

	p := h.slack.got()[1]
	if hd := header(p); hd != "Regressed: nil pointer dereference in main.(*server).retries" {
		t.Errorf("header %q", hd)
	}
	all := strings.Join(texts(p), "\n")
	for _, want := range []string{"Back in v1.1.0 after a quiet period; first seen 2026-11-03 12:00 UTC in v1.0.0.", "Count: 2, first seen", "Group (2 crashes)"} {
		if !strings.Contains(all, want) {
			t.Errorf("regression lacks %q:\n%s", want, all)
		}
	}
}

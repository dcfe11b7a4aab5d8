package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/notify"
)

func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}

// fakeTime is the Client's clock: sleeping advances it at once and is
// recorded, so that waits are checked without waiting.
type fakeTime struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func (f *fakeTime) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeTime) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slept = append(f.slept, d)
	f.t = f.t.Add(d)
	return nil
}

func (f *fakeTime) sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.slept...)
}

// recorder stands in for Slack: it answers with the scripted responses in
// turn (then 200 "ok") and records every request.
type recorder struct {
	mu      sync.Mutex
	script  []func(w http.ResponseWriter)
	bodies  [][]byte
	headers []http.Header
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.bodies = append(rec.bodies, body)
	rec.headers = append(rec.headers, r.Header.Clone())
	var respond func(http.ResponseWriter)
	if len(rec.script) > 0 {
		respond, rec.script = rec.script[0], rec.script[1:]
	}
	rec.mu.Unlock()
	if respond == nil {
		io.WriteString(w, "ok")
		return
	}
	respond(w)
}

func (rec *recorder) requests() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.bodies)
}

func status(code int, body string, header ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

const secretPath = "/services/T0000/B0000/s3cr3tW3bh00kT0k3n"

func newClient(t *testing.T, cfg Config) (*Client, *fakeTime, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTime{t: t0}
	c.now, c.sleep = ft.now, ft.sleep
	return c, ft, &logs
}

func webhook(t *testing.T, rec *recorder) (*Client, *fakeTime, *bytes.Buffer) {
	t.Helper()
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return newClient(t, Config{WebhookURL: srv.URL + secretPath, UIURL: testUI})
}

func newAlert() *notify.Message { return alertOf(notify.KindNew, nilDeref()) }

func TestRetryAfter(t *testing.T) {
	rec := &recorder{script: []func(http.ResponseWriter){status(429, "rate_limited", "Retry-After", "7")}}
	c, ft, _ := webhook(t, rec)
	if _, err := c.Send(context.Background(), newAlert()); err != nil {
		t.Fatal(err)
	}
	if n := rec.requests(); n != 2 {
		t.Fatalf("%d requests, want the refused one and one retry", n)
	}
	if !bytes.Equal(rec.bodies[0], rec.bodies[1]) {
		t.Error("the retry sent a different message")
	}
	var waited time.Duration
	for _, d := range ft.sleeps() {
		waited += d
	}
	if waited < 7*time.Second || waited > 8*time.Second {
		t.Errorf("waited %v between the 429 and the retry (sleeps %v), want Retry-After's 7s", waited, ft.sleeps())
	}
}

func TestServerErrorsBackOff(t *testing.T) {
	rec := &recorder{script: []func(http.ResponseWriter){status(500, "oops"), status(503, "down"), status(502, "bad gateway")}}
	c, ft, _ := webhook(t, rec)
	if _, err := c.Send(context.Background(), newAlert()); err != nil {
		t.Fatal(err)
	}
	if n := rec.requests(); n != 4 {
		t.Fatalf("%d requests, want 3 failures and the success", n)
	}
	s := ft.sleeps()
	if len(s) != 3 || s[0] < minBackoff || s[1] < 2*minBackoff || s[2] < 4*minBackoff {
		t.Errorf("sleeps %v, want a growing backoff from %v", s, minBackoff)
	}
}

func TestRejectedIsNotRetried(t *testing.T) {
	rec := &recorder{script: []func(http.ResponseWriter){status(400, "invalid_blocks")}}
	c, _, _ := webhook(t, rec)
	_, err := c.Send(context.Background(), newAlert())
	if !errors.Is(err, corepipe.ErrInvalid) || !strings.Contains(err.Error(), "invalid_blocks") {
		t.Fatalf("err %v, want ErrInvalid with Slack's reason", err)
	}
	if n := rec.requests(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestRateLimit(t *testing.T) {
	rec := &recorder{}
	c, ft, _ := webhook(t, rec)
	for range 3 {
		if _, err := c.Send(context.Background(), newAlert()); err != nil {
			t.Fatal(err)
		}
	}
	if s := ft.sleeps(); len(s) != 2 || s[0] != time.Second || s[1] != time.Second {
		t.Errorf("sleeps %v between three messages, want 1s before each of the last two", s)
	}
}

func TestBotThreads(t *testing.T) {
	const token = "xoxb-1111-s3cr3tb0tt0k3n"
	rec := &recorder{script: []func(http.ResponseWriter){
		status(200, `{"ok":true,"ts":"1700000000.000100"}`),
		status(200, `{"ok":false,"error":"internal_error"}`),
		status(200, `{"ok":true,"ts":"1700000001.000200"}`),
		status(200, `{"ok":false,"error":"channel_not_found"}`),
		status(200, `{"ok":true,"ts":"1700000002.000300"}`),
		status(200, `{"ok":false,"error":"invalid_blocks"}`),
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c, _, logs := newClient(t, Config{Token: token, Channel: "C0CRASHES", APIURL: srv.URL + "/api", UIURL: testUI})
	if !c.Threads() {
		t.Fatal("a bot client must thread")
	}
	thread, err := c.Send(context.Background(), newAlert())
	if err != nil || thread != "1700000000.000100" {
		t.Fatalf("Send = %q, %v; want the message's ts", thread, err)
	}
	sum := notify.Summary{Signature: "gocrash/v1:aa", Count: 3, Total: 4}
	if _, err := c.Send(context.Background(), &notify.Message{Kind: notify.KindFollowUp, FollowUp: &sum, Thread: thread}); err != nil {
		t.Fatalf("follow-up: %v", err)
	}
	// A missing channel is fixed by someone, then the message goes out.
	if thread, err := c.Send(context.Background(), newAlert()); err != nil || thread != "1700000002.000300" {
		t.Errorf("after channel_not_found: %q, %v; want the retry delivered", thread, err)
	}
	_, err = c.Send(context.Background(), newAlert())
	if !errors.Is(err, corepipe.ErrInvalid) || !strings.Contains(err.Error(), "invalid_blocks") {
		t.Errorf("err %v, want a refusal naming invalid_blocks", err)
	}
	if !strings.Contains(logs.String(), "channel_not_found") {
		t.Error("the refused channel was not logged")
	}

	var first, reply payload
	json.Unmarshal(rec.bodies[0], &first)
	json.Unmarshal(rec.bodies[2], &reply)
	if first.Channel != "C0CRASHES" || first.ThreadTS != "" {
		t.Errorf("alert went to %q thread %q", first.Channel, first.ThreadTS)
	}
	if reply.ThreadTS != thread || !bytes.Equal(rec.bodies[1], rec.bodies[2]) {
		t.Errorf("follow-up thread_ts %q, want %q, retried unchanged", reply.ThreadTS, thread)
	}
	if got := rec.headers[0].Get("Authorization"); got != "Bearer "+token {
		t.Errorf("Authorization %q", got)
	}
	if strings.Contains(logs.String(), token) || strings.Contains(err.Error(), token) {
		t.Error("the token leaked into a log line or an error")
	}
}

// TestSecretsNeverLogged drives every failure path of a webhook and checks
// that neither the log nor the errors name the webhook URL.
func TestSecretsNeverLogged(t *testing.T) {
	rec := &recorder{script: []func(http.ResponseWriter){
		status(500, "internal"),
		status(429, "", "Retry-After", "1"),
		status(404, "no_service"),
		status(400, "invalid_payload"),
	}}
	c, _, logs := webhook(t, rec)
	_, err := c.Send(context.Background(), newAlert())
	if !errors.Is(err, corepipe.ErrInvalid) {
		t.Fatalf("err %v, want a refusal", err)
	}
	if n := rec.requests(); n != 4 {
		t.Errorf("%d requests, want the 500, 429 and 404 retried until the 400", n)
	}
	errs := []error{err}
	for _, want := range []string{"server_error", "rate_limited", "no_service"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %s was logged:\n%s", want, logs)
		}
	}

	// Network errors: net/http quotes the URL in them.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + secretPath
	ln.Close()
	c2, ft, logs2 := newClient(t, Config{WebhookURL: dead})
	ctx, cancel := context.WithCancel(context.Background())
	c2.sleep = func(ctx context.Context, d time.Duration) error {
		if len(ft.sleeps()) >= 3 {
			cancel()
		}
		return ft.sleep(ctx, d)
	}
	_, err = c2.Send(ctx, newAlert())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want the cancellation after retries", err)
	}
	errs = append(errs, err)
	if !strings.Contains(logs2.String(), "network_error") {
		t.Errorf("no network error was logged:\n%s", logs2)
	}

	_, err = New(Config{WebhookURL: "ftp://hooks.example" + secretPath})
	errs = append(errs, err)

	all := logs.String() + logs2.String()
	for _, e := range errs {
		all += "\n" + e.Error()
	}
	for _, secret := range []string{secretPath, "s3cr3tW3bh00kT0k3n"} {
		if strings.Contains(all, secret) {
			t.Errorf("the webhook secret appears in the log or errors:\n%s", all)
		}
	}
	if got := (Config{WebhookURL: dead}).String(); strings.Contains(got, "s3cr3t") {
		t.Errorf("Config prints as %q", got)
	}
}

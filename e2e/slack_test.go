package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestDevSlack crashes a real program under `corepipe dev` with a Slack
// webhook configured, and checks the message Slack would get: the title,
// the crashing goroutine's frames as the runtime printed them, and a link to
// the crash in the UI. A local server stands in for Slack.
func TestDevSlack(t *testing.T) {
	holdCorePattern(t)
	var (
		mu       sync.Mutex
		payloads []string
	)
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		payloads = append(payloads, string(b))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer slack.Close()
	webhook := slack.URL + "/services/T000/B000/secret-token"

	dev, api := startDev(t, []string{"COREPIPE_SLACK_WEBHOOK=" + webhook})

	res := crashtest.Run(t, time.Minute, crashProgram{name: "nilderef"}.build(t), nil)
	r := waitReport(t, api, res.PID, 2*time.Minute)

	var msg string
	deadline := time.Now().Add(time.Minute)
	for msg == "" && time.Now().Before(deadline) {
		mu.Lock()
		for _, p := range payloads {
			if strings.Contains(p, r.ID) {
				msg = p
			}
		}
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	if msg == "" {
		t.Fatalf("no Slack message about crash %s within a minute; got %d others", r.ID, len(payloads))
	}
	for _, want := range []string{
		"nil pointer dereference in main.(*server).retries",
		"main.handle",
		"main.serve",
		"/crashes/" + r.ID,
		"0x0",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Slack message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(dev.out.String(), "secret-token") {
		t.Error("the webhook URL, a secret, appears in corepipe's output")
	}
}

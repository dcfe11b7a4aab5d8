package api

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/corepipe/corepipe"
)

// TestBrowserTriage resolves a group from its page in a real headless
// Chromium, then a newer build crashes the same way, and the page shows it
// regressed, with the history of both. Screenshots at 1 400 and 800 px
// wide go to artifacts/, and no table may be wider than the window.
func TestBrowserTriage(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("%s is not installed (scripts/install-tools.sh installs it): %v", chromium, err)
	}
	e, _ := triageEnv(t)
	r := newReport(time.Hour)
	r.Signature = "gocrash/v1:b40e5e"
	r.Go.MainVersion = "v1.0.0"
	e.add(r, true)

	group := e.url + "/groups/" + r.Signature
	ctx := startBrowser(t, 1400, group)

	err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), triageToken),
		chromedp.Submit(chromedp.CSS(`form.login`)),
		chromedp.WaitVisible(chromedp.CSS(`form.triage`)),
		chromedp.SetValue(chromedp.CSS(`form.triage select[name="status"]`), "resolved"),
		chromedp.SetValue(chromedp.CSS(`form.triage select[name="resolved_in"]`), "next"),
		chromedp.SendKeys(chromedp.CSS(`form.triage input[name="comment"]`), "fixed by #42"),
		chromedp.Submit(chromedp.CSS(`form.triage`)),
		chromedp.WaitVisible(chromedp.CSS(`.meta .gstatus-resolved`)),
	)
	if err != nil {
		t.Fatalf("resolve the group from its page: %v", err)
	}

	newer := newReport(0)
	newer.CapturedAt = time.Now().UTC()
	newer.ID = corepipe.NewID(newer.CapturedAt)
	newer.Signature = r.Signature
	newer.Go.MainVersion = "v1.1.0"
	e.add(newer, true)
	err = chromedp.Do(ctx,
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`.meta .gstatus-regressed`)),
	)
	if err != nil {
		t.Fatalf("see it regressed: %v", err)
	}
	history, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`table.history tbody`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"regressed: crashed in v1.1.0, newer than v1.0.0", "alice", "resolved in the next release", "fixed by #42"} {
		if !strings.Contains(history, want) {
			t.Errorf("history lacks %q:\n%s", want, history)
		}
	}

	// A build without a version or revision is known by its 80-character
	// Go build ID, which once widened the groups table past the screen.
	noVersion := newReport(30 * time.Minute)
	noVersion.Signature = "gocrash/v1:b1d"
	noVersion.Go = &corepipe.GoInfo{BuildID: "Rz3Hk0lXbJd9mPq2vWcN/aBcDeFgHiJkLmNoPqRs/tUvWxYz0123456789ab/cDeFgHiJkLmNoPqRsTuV"}
	e.add(noVersion, true)
	for _, page := range []struct{ name, url, ready string }{
		{"group", group, `table.history`},
		{"groups", e.url + "/groups", `table.groups`},
		{"group-build-id", e.url + "/groups/" + noVersion.Signature, `table.shares`},
		{"releases", e.url + "/releases", `table.releases`},
	} {
		for _, width := range []int64{1400, 800} {
			err := chromedp.Do(ctx,
				chromedp.EmulateViewport(width, 900),
				chromedp.Navigate(page.url),
				chromedp.WaitVisible(chromedp.CSS(page.ready)),
			)
			if err != nil {
				t.Fatal(err)
			}
			overflow, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('table')].filter(t => t.getBoundingClientRect().right > document.documentElement.clientWidth + 1).map(t => t.className + ' ' + Math.round(t.getBoundingClientRect().right))`))
			if err != nil {
				t.Fatal(err)
			}
			if len(overflow) > 0 {
				t.Errorf("%s at %d px: tables wider than the window: %v", page.name, width, overflow)
			}
			shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			saveArtifact(t, fmt.Sprintf("browser-triage-%s-%d.png", page.name, width), shot)
		}
	}
}

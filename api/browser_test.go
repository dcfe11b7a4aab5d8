package api

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium is where Debian's chromium package puts the browser;
// scripts/install-tools.sh installs it.
const chromium = "/usr/bin/chromium"

// startBrowser starts a headless Chromium with a window width px wide, opens
// url in it, and returns the context for the test's steps (a minute at most);
// the browser is gone when the test ends.
func startBrowser(t *testing.T, width int, url string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests run as root in CI
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// The first action starts the browser, which lives as long as the
	// context of that call: it gets no timeout, the later steps do.
	if err := chromedp.Do(browser, chromedp.Navigate(url)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestBrowser drives a real headless Chromium through the UI as a person
// would, with a token typed into the login form: open the list, click into
// the crash, see the crashing goroutine's function. It keeps a screenshot of
// the crash page under artifacts/ for a person to look at.
func TestBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("%s is not installed (scripts/install-tools.sh installs it): %v", chromium, err)
	}
	e := newEnvWith(t, func(c *Config) { c.Tokens = testTokens(t) })
	older := newReport(time.Hour)
	older.Title = "concurrent map writes in main.(*cache).put"
	e.add(older, true)
	r := storedCrash(e, time.Minute)

	ctx := startBrowser(t, 1366, e.url+"/") // a laptop screen

	loginTitle, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(loginTitle, "Sign in") {
		t.Errorf("first page title %q: want the login form", loginTitle)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), viewerToken),
		chromedp.Submit(chromedp.CSS(`form.login`)),
		chromedp.WaitVisible(chromedp.CSS(`table.crashes`)),
		chromedp.Click(chromedp.CSS(`a[href="/crashes/`+r.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.goroutine.crashing`)),
	)
	if err != nil {
		t.Fatalf("sign in and open the crash: %v", err)
	}
	crashingFn, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`.goroutine.crashing .fn`)))
	if err != nil {
		t.Fatal(err)
	}
	if crashingFn != "main.(*server).retries" {
		t.Errorf("crashing goroutine's first function = %q, want main.(*server).retries", crashingFn)
	}
	headline, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`h1.headline`)))
	if err != nil {
		t.Fatal(err)
	}
	if headline != r.Title {
		t.Errorf("headline = %q, want %q", headline, r.Title)
	}
	screenshot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveArtifact(t, "browser-crash.png", screenshot)

	// The group page with its chart, for the eye.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/groups/`+r.Signature+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`figure.chart svg`)),
	)
	if err != nil {
		t.Fatalf("open the group: %v", err)
	}
	if screenshot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	saveArtifact(t, "browser-group.png", screenshot)

	// Signing out goes through the CSRF-checked form and ends the session
	// on the server: the list asks for a token again.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form.logout button`)),
		chromedp.WaitVisible(chromedp.CSS(`form.login`)),
		chromedp.Navigate(e.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`form.login`)),
	)
	if err != nil {
		t.Fatalf("sign out: %v", err)
	}

	// The demonstrated open redirect: signing in from a link whose next is
	// "/%09/evil.example/" stays on this server.
	err = chromedp.Do(ctx,
		chromedp.Navigate(e.url+"/login?next=/%09/evil.example/"),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), viewerToken),
		chromedp.Submit(chromedp.CSS(`form.login`)),
		chromedp.WaitVisible(chromedp.CSS(`table.crashes`)),
	)
	if err != nil {
		t.Fatalf("sign in with a foreign next: %v", err)
	}
	landed, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if landed != e.url+"/" {
		t.Errorf("after sign-in the browser is at %q, want %s/", landed, e.url)
	}
}

// saveArtifact writes b under the repository's artifacts/ directory, which
// CI keeps and git ignores.
func saveArtifact(t *testing.T, name string, b []byte) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("find the repository: %v", err)
	}
	dir := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

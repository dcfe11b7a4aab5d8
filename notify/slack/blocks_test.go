package slack

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/notify"
)

const testUI = "https://ui.example/corepipe"

var t0 = time.Date(2026, 11, 3, 14, 5, 0, 0, time.UTC)

func nilDeref() *corepipe.Report {
	return &corepipe.Report{
		Schema: corepipe.ReportSchema, ID: corepipe.NewID(t0), Status: corepipe.StatusAnalyzed, CapturedAt: t0,
		Node:      "node-1",
		Process:   corepipe.Process{PID: 4242, Exe: "/app/api"},
		Container: &corepipe.Container{Namespace: "prod", Pod: "api-7f9c", Container: "api", Image: "registry.example/api:v1.2.3"},
		Signal:    &corepipe.Signal{Number: 6, Name: "SIGABRT"},
		Fault:     &corepipe.Fault{Signal: 11, Name: "SIGSEGV", Code: 1, CodeName: "SEGV_MAPERR", Address: "0x0", PC: "0x4a1b2c"},
		Panic:     &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: "runtime error: invalid memory address or nil pointer dereference"},
		Go:        &corepipe.GoInfo{MainVersion: "v1.2.3"},
		Signature: "gocrash/v1:0123abcd",
		Title:     "nil pointer dereference in main.(*server).retries",
		TopFrames: []corepipe.Frame{
			{Function: "main.(*server).retries", File: "/src/api/main.go", Line: 15},
			{Function: "main.handle", File: "/src/api/main.go", Line: 18},
			{Function: "main.main", File: "/src/api/main.go", Line: 34},
		},
	}
}

func alertOf(kind notify.Kind, r *corepipe.Report) *notify.Message {
	g := &corepipe.Group{}
	g.Observe(r)
	return &notify.Message{Kind: kind, Report: r, Group: g}
}

func render(t *testing.T, m *notify.Message) *payload {
	t.Helper()
	p, err := renderer{ui: testUI}.render(m)
	if err != nil {
		t.Fatal(err)
	}
	// What Slack receives is the JSON: check it survives the trip.
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back payload
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	return &back
}

func TestAlertBlocks(t *testing.T) {
	r := nilDeref()
	p := render(t, alertOf(notify.KindNew, r))

	if p.Mrkdwn || p.UnfurlLinks {
		t.Errorf("mrkdwn %v unfurl %v: the fallback must not be formatted, the UI not unfurled", p.Mrkdwn, p.UnfurlLinks)
	}
	if want := "New crash: nil pointer dereference in main.(*server).retries (prod/api-7f9c on node-1)"; p.Text != want {
		t.Errorf("fallback text %q, want %q", p.Text, want)
	}
	if len(p.Blocks) != 5 {
		t.Fatalf("%d blocks, want header, panic, fields, stack, links: %+v", len(p.Blocks), p.Blocks)
	}
	if h := p.Blocks[0]; h.Type != "header" || h.Text.Type != "plain_text" || h.Text.Text != "New crash: nil pointer dereference in main.(*server).retries" {
		t.Errorf("header %+v", h.Text)
	}
	wantBody(t, p, "panic: runtime error: invalid memory address or nil pointer dereference",
		"Signal: SIGSEGV SEGV_MAPERR at 0x0, pc 0x4a1b2c",
		"Pod: prod/api-7f9c (api)",
		"Image: registry.example/api:v1.2.3",
		"Node: node-1",
		"Version: v1.2.3",
		"Count: 1, first seen 2026-11-03 14:05 UTC")
	wantCode := "```\nmain.(*server).retries\n\t/src/api/main.go:15\nmain.handle\n\t/src/api/main.go:18\nmain.main\n\t/src/api/main.go:34\n```"
	if c := p.Blocks[3].Text; c.Type != "mrkdwn" || c.Text != wantCode {
		t.Errorf("stack block %s %q, want %q", c.Type, c.Text, wantCode)
	}
	wantLinks := "<" + testUI + "/crashes/" + r.ID + "|Crash " + r.ID + ">  ·  <" + testUI + "/groups/gocrash%2Fv1:0123abcd|Group (1 crash)>"
	if l := p.Blocks[4]; l.Type != "context" || l.Elements[0].Type != "mrkdwn" || l.Elements[0].Text != wantLinks {
		t.Errorf("links %+v, want %q", l.Elements[0], wantLinks)
	}
}

func TestAlertKinds(t *testing.T) {
	r := nilDeref()
	reg := alertOf(notify.KindRegressed, r)
	reg.Group.FirstVersion, reg.Group.LastVersion = "v1.0.0", "v1.2.3"
	spike := alertOf(notify.KindSpike, r)
	spike.Spike = &notify.Spike{Count: 20, Window: 10 * time.Minute}
	resolved := alertOf(notify.KindRegressed, r)
	resolved.Group.Triage = &corepipe.Triage{Status: corepipe.TriageRegressed, ResolvedIn: "v1.2.0"}
	resolved.Group.Assignee = "team-payments"
	reopened := alertOf(notify.KindReopened, r)
	for _, tc := range []struct {
		m            *notify.Message
		header, what string
	}{
		{reg, "Regressed: ", "Back in v1.2.3 after a quiet period; first seen 2026-11-03 14:05 UTC in v1.0.0."},
		{spike, "Crash spike: ", "More than 20 crashes within 10m0s."},
		{resolved, "Regressed: ", "Resolved in v1.2.0, crashed again in v1.2.3."},
		{reopened, "No longer ignored: ", "It was ignored; that has run out, and it crashed again."},
	} {
		p := render(t, tc.m)
		if !strings.HasPrefix(p.Blocks[0].Text.Text, tc.header) || !strings.HasPrefix(p.Text, tc.header) {
			t.Errorf("%s: header %q, fallback %q", tc.m.Kind, p.Blocks[0].Text.Text, p.Text)
		}
		if got := p.Blocks[1].Text.Text; !strings.HasPrefix(got, tc.what+"\n") {
			t.Errorf("%s: first section %q, want it to start with %q", tc.m.Kind, got, tc.what)
		}
	}
	var owner bool
	for _, f := range render(t, resolved).Blocks[2].Fields {
		owner = owner || f.Text == "Owner: team-payments"
	}
	if !owner {
		t.Error("the alert does not name the group's owner")
	}
}

// hostile is crash text written by an attacker who controls the crashing
// program: its panic message, its function names, its pod's name.
const hostile = "<!channel> <!here> @here @Channel <@U024BE7LH> <#C123> *bold* _it_ ~s~ `tick` ```fence``` " +
	"<script>alert(1)</script> [click](https://evil.example) <https://evil.example|click me> & &amp;"

func TestAlertEscapesCrashText(t *testing.T) {
	r := nilDeref()
	r.Title = hostile
	r.Panic.Message = hostile
	r.Node = hostile
	r.Container.Namespace, r.Container.Pod, r.Container.Image = hostile, hostile, hostile
	r.Fault.CodeName = hostile
	r.TopFrames = append(r.TopFrames, corepipe.Frame{Function: "main.f```\n<!channel>", File: "/src/```*x*```.go", Line: 1})
	m := alertOf(notify.KindNew, r)
	m.Group.Signature = "gocrash/v1:|<evil>&x"
	p := render(t, m)

	for _, obj := range textObjects(p) {
		checkInert(t, obj)
	}
	checkInert(t, &textObj{Type: "plain_text", Text: p.Text})
	code := p.Blocks[3].Text.Text
	if n := strings.Count(code, "```"); n != 2 || !strings.HasPrefix(code, "```\n") || !strings.HasSuffix(code, "\n```") {
		t.Errorf("stack block has %d fences, want its own two: %q", n, code)
	}
	if h := p.Blocks[0].Text.Text; !strings.Contains(h, "&lt;!channel&gt;") {
		t.Errorf("header %q: want the mention shown as text, escaped", h)
	}
	links := p.Blocks[4].Elements[0].Text
	if !strings.Contains(links, "/groups/gocrash%2Fv1:%7C%3Cevil%3E&amp;x|") {
		t.Errorf("group link %q: the signature must be path-escaped inside the link", links)
	}
}

// ourLink is a link this package makes: to the UI, with a fixed label.
var ourLink = regexp.MustCompile(`<` + regexp.QuoteMeta(testUI) + `/[^|<>\s]*\|[^<>]*>`)

// checkInert fails when obj holds anything Slack would act on: a raw < or >
// outside our own links, a bare broadcast, or, in mrkdwn, formatting that
// is not our code block.
// wantBody checks the message's panic section and its fields, in order.
func wantBody(t *testing.T, p *payload, panicText string, wantFields ...string) {
	t.Helper()
	if s := p.Blocks[1].Text.Text; s != panicText {
		t.Errorf("panic section %q", s)
	}
	fields := plainFields(t, p)
	if strings.Join(fields, "\n") != strings.Join(wantFields, "\n") {
		t.Errorf("fields\n%s\nwant\n%s", strings.Join(fields, "\n"), strings.Join(wantFields, "\n"))
	}
}

// plainFields is the text of the message's fields block, each of which must
// be plain_text: crash text is never read as mrkdwn.
func plainFields(t *testing.T, p *payload) []string {
	t.Helper()
	var fields []string
	for _, f := range p.Blocks[2].Fields {
		if f.Type != "plain_text" {
			t.Errorf("field %q is %s: crash text goes in plain_text", f.Text, f.Type)
		}
		fields = append(fields, f.Text)
	}
	return fields
}

func checkInert(t *testing.T, obj *textObj) {
	t.Helper()
	s := obj.Text
	if obj.Type == "mrkdwn" {
		s = ourLink.ReplaceAllString(s, "")
		if strings.HasPrefix(s, "```") {
			s = strings.TrimSuffix(strings.TrimPrefix(s, "```"), "```")
			if strings.Contains(s, "`") {
				t.Errorf("backtick inside the code block %q", obj.Text)
			}
		} else if strings.ContainsAny(s, "*_~`") {
			t.Errorf("mrkdwn %q formats crash text", obj.Text)
		}
	}
	if strings.ContainsAny(s, "<>") {
		t.Errorf("%s %q has a raw < or >", obj.Type, obj.Text)
	}
	if regexp.MustCompile(`(?i)@(here|channel|everyone)`).MatchString(s) {
		t.Errorf("%s %q has a bare broadcast", obj.Type, obj.Text)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '&' && !regexp.MustCompile(`^&(amp|lt|gt);`).MatchString(s[i:]) {
			t.Errorf("%s %q has a raw &", obj.Type, obj.Text)
			break
		}
	}
}

func textObjects(p *payload) []*textObj {
	var out []*textObj
	for _, b := range p.Blocks {
		if b.Text != nil {
			out = append(out, b.Text)
		}
		out = append(out, b.Fields...)
		out = append(out, b.Elements...)
	}
	return out
}

// checkLimits fails the test when a block of p is longer than Slack takes.
func checkLimits(t *testing.T, p *payload) {
	t.Helper()
	limits := map[string]int{"header": maxHeader, "section": maxSection, "context": maxSection}
	for _, b := range p.Blocks {
		if b.Text != nil && utf8.RuneCountInString(b.Text.Text) > limits[b.Type] {
			t.Errorf("%s block of %d characters, limit %d", b.Type, utf8.RuneCountInString(b.Text.Text), limits[b.Type])
		}
		for _, f := range b.Fields {
			if utf8.RuneCountInString(f.Text) > maxField {
				t.Errorf("field of %d characters", utf8.RuneCountInString(f.Text))
			}
		}
	}
}

func TestFitLimits(t *testing.T) {
	r := nilDeref()
	r.Title = strings.Repeat("&", 1000)
	r.Panic.Message = strings.Repeat("<x>", 5000)
	r.TopFrames = nil
	for i := range 2000 {
		r.TopFrames = append(r.TopFrames, corepipe.Frame{Function: "main.f" + strings.Repeat("`", i%7), File: "/f.go", Line: i})
	}
	p := render(t, alertOf(notify.KindNew, r))
	checkLimits(t, p)
	h := p.Blocks[0].Text.Text
	if !strings.HasSuffix(h, "…") || strings.Contains(strings.TrimSuffix(h, "…"), "&amp;&amp;;") || !regexp.MustCompile(`^[^&]*(&amp;)+…$`).MatchString(h) {
		t.Errorf("cut header %q: want whole entities and an ellipsis", h)
	}
	if code := p.Blocks[3].Text.Text; !strings.HasSuffix(code, "…\n```") {
		t.Errorf("cut stack block ends %q", code[len(code)-20:])
	}
}

func TestDigestAndFollowUp(t *testing.T) {
	id := corepipe.NewID(t0)
	sum := notify.Summary{Signature: "gocrash/v1:aa", Title: "fatal error: concurrent map writes in main.update <!here>", Count: 49, Total: 50,
		FirstSeen: t0, Since: t0.Add(time.Second), LastAt: t0.Add(time.Minute), LastID: id, LastNode: "node-2", LastWorkload: "prod/worker-1"}

	p := render(t, &notify.Message{Kind: notify.KindFollowUp, FollowUp: &sum, Thread: "1700000000.000100"})
	want := "49 more crashes since 2026-11-03 14:05 UTC. Last 2026-11-03 14:06 UTC on node-2 (prod/worker-1); 50 in all since 2026-11-03 14:05 UTC."
	if p.Blocks[0].Text.Text != want || p.Text != want {
		t.Errorf("follow-up %q / fallback %q, want %q", p.Blocks[0].Text.Text, p.Text, want)
	}
	wantLinks := "<" + testUI + "/groups/gocrash%2Fv1:aa|Group>  ·  <" + testUI + "/crashes/" + id + "|Latest crash>"
	if got := p.Blocks[1].Elements[0].Text; got != wantLinks {
		t.Errorf("follow-up links %q, want %q", got, wantLinks)
	}

	d := &notify.Digest{Since: t0, Until: t0.Add(time.Hour), Groups: []notify.Summary{sum}, MoreGroups: 2, MoreCrashes: 3, Unanalysed: 1}
	p = render(t, &notify.Message{Kind: notify.KindDigest, Digest: d})
	if h := p.Blocks[0].Text.Text; h != "Crash digest: 52 crashes in 3 groups" {
		t.Errorf("digest header %q", h)
	}
	if line := p.Blocks[2].Text.Text; !strings.HasPrefix(line, "49 × fatal error: concurrent map writes in main.update &lt;!here&gt;\nLast 2026-11-03 14:06 UTC on node-2") {
		t.Errorf("digest line %q", line)
	}
	var all []string
	for _, obj := range textObjects(p) {
		checkInert(t, obj)
		all = append(all, obj.Text)
	}
	for _, want := range []string{"…and 2 more groups with 3 crashes.", "1 crash could not be analysed. <" + testUI + "/|See the crash list.>"} {
		if !strings.Contains(strings.Join(all, "\n"), want) {
			t.Errorf("digest lacks %q:\n%s", want, strings.Join(all, "\n"))
		}
	}
}

// TestOwnerMentions: an owner the operator's mentions name is mentioned,
// a user by <@ID> and a user group by <!subteam^ID>; any other owner, even
// one named like a broadcast, stays text. The name beside a mention is
// escaped: a triager chooses it.
func TestOwnerMentions(t *testing.T) {
	m, err := ParseMentions(strings.NewReader("# owner → Slack\nteam-payments S0123ABCD\nalice U024BE7LH\n<!here> W0AAAAAA\n"))
	if err != nil {
		t.Fatal(err)
	}
	rd := renderer{ui: testUI, mentions: m}
	for owner, want := range map[string]*textObj{
		"team-payments": {Type: "mrkdwn", Text: "Owner: <!subteam^S0123ABCD> (team-payments)"},
		"alice":         {Type: "mrkdwn", Text: "Owner: <@U024BE7LH> (alice)"},
		"<!here>":       {Type: "mrkdwn", Text: "Owner: <@W0AAAAAA> (&lt;!here&gt;)"},
		"bob":           {Type: "plain_text", Text: "Owner: bob"},
		"@here":         {Type: "plain_text", Text: "Owner: @\u200bhere"},
	} {
		msg := alertOf(notify.KindNew, nilDeref())
		msg.Group.Assignee = owner
		p, err := rd.render(msg)
		if err != nil {
			t.Fatal(err)
		}
		fs := p.Blocks[2].Fields
		if got := fs[len(fs)-1]; got.Type != want.Type || got.Text != want.Text {
			t.Errorf("owner %q: field %s %q, want %s %q", owner, got.Type, got.Text, want.Type, want.Text)
		}
	}
	for _, bad := range []string{"team-payments\n", "team-payments #general\n", "a b c\n", "team-payments s0123abcd\n"} {
		if _, err := ParseMentions(strings.NewReader(bad)); err == nil || corepipe.ErrorCode(err) != corepipe.EINVALID || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: %v, want an invalid-input error naming line 1", bad, err)
		}
	}
	if _, err := New(Config{WebhookURL: "https://hooks.example/x", Mentions: Mentions{"a": "<!channel>"}}); err == nil {
		t.Error("a mention that is not a Slack ID is accepted")
	}
}

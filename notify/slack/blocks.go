package slack

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/notify"
)

// Slack's limits on Block Kit (https://docs.slack.dev/reference/block-kit):
// beyond them the whole message is refused.
const (
	maxHeader   = 150
	maxSection  = 3000
	maxField    = 2000
	maxFallback = 3000
	// maxPanic keeps the panic message to what fits on a phone.
	maxPanic = 500
)

// payload is a chat.postMessage body; incoming webhooks take the same.
type payload struct {
	Channel  string  `json:"channel,omitempty"`
	ThreadTS string  `json:"thread_ts,omitempty"`
	Text     string  `json:"text"`
	Blocks   []block `json:"blocks"`
	// Mrkdwn false keeps Slack from formatting the fallback text, which
	// quotes the crash.
	Mrkdwn bool `json:"mrkdwn"`
	// The UI is internal: Slack cannot unfurl it, and must not try.
	UnfurlLinks bool `json:"unfurl_links"`
	UnfurlMedia bool `json:"unfurl_media"`
}

type block struct {
	Type     string     `json:"type"`
	Text     *textObj   `json:"text,omitempty"`
	Fields   []*textObj `json:"fields,omitempty"`
	Elements []*textObj `json:"elements,omitempty"`
}

type textObj struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji *bool  `json:"emoji,omitempty"`
}

var noEmoji = new(bool)

// plain is a plain_text object of untrusted text: Slack neither formats it
// nor turns :names: into emoji.
func plain(s string, max int) *textObj {
	return &textObj{Type: "plain_text", Text: fit(escape(s), max), Emoji: noEmoji}
}

// mrkdwn is a mrkdwn object of text this package built and escaped.
func mrkdwn(s string) *textObj { return &textObj{Type: "mrkdwn", Text: s} }

// renderer turns messages into payloads.
type renderer struct {
	// ui is the web UI's base URL without a trailing slash, or "".
	ui       string
	mentions Mentions
}

func (rd renderer) render(m *notify.Message) (*payload, error) {
	switch m.Kind {
	case notify.KindNew, notify.KindRegressed, notify.KindSpike, notify.KindReopened:
		if m.Report == nil || m.Group == nil {
			return nil, fmt.Errorf("%w: %s message without its crash", corepipe.ErrInvalid, m.Kind)
		}
		return rd.alert(m), nil
	case notify.KindFollowUp:
		if m.FollowUp == nil {
			return nil, fmt.Errorf("%w: follow-up without a summary", corepipe.ErrInvalid)
		}
		return rd.followUp(m.FollowUp), nil
	case notify.KindDigest:
		if m.Digest == nil {
			return nil, fmt.Errorf("%w: digest without counts", corepipe.ErrInvalid)
		}
		return rd.digest(m.Digest), nil
	}
	return nil, fmt.Errorf("%w: unknown message kind %q", corepipe.ErrInvalid, m.Kind)
}

var alertHeadings = map[notify.Kind]string{
	notify.KindNew:       "New crash",
	notify.KindRegressed: "Regressed",
	notify.KindSpike:     "Crash spike",
	notify.KindReopened:  "No longer ignored",
}

// alert is the message people act on: what broke, where, how often, the
// stack, and the links to look closer.
func (rd renderer) alert(m *notify.Message) *payload {
	r, g := m.Report, m.Group
	if r.Kernel != nil {
		return rd.kernelAlert(m)
	}
	title := r.Headline()
	private := r.Process.Dumpable == 2
	if private {
		title = privilegedTitle(r)
	}
	heading := alertHeadings[m.Kind]
	blocks := []block{{Type: "header", Text: plain(heading+": "+title, maxHeader)}}

	var what []string
	switch m.Kind {
	case notify.KindRegressed:
		if t := g.Triage; t != nil && t.Status == corepipe.TriageRegressed {
			what = append(what, fmt.Sprintf("Resolved %s, crashed again in %s.", resolvedWhen(t), orUnknown(r.Version())))
			break
		}
		what = append(what, fmt.Sprintf("Back in %s after a quiet period; first seen %s in %s.",
			orUnknown(g.LastVersion), when(g.FirstSeen), orUnknown(g.FirstVersion)))
	case notify.KindReopened:
		what = append(what, "It was ignored; that has run out, and it crashed again.")
	case notify.KindSpike:
		if s := m.Spike; s != nil {
			what = append(what, fmt.Sprintf("More than %d crashes within %s.", s.Count, s.Window))
		}
	}
	switch p := r.Panic; {
	case private:
		what = append(what, "A privileged process (setuid, dumped under suid_dumpable=2): its message and stack may hold what its user could not read, so they are shown only in the UI.")
	case p != nil && p.Message != "":
		what = append(what, p.Kind+": "+corepipe.Clip(p.Message, maxPanic))
	case r.Error != "":
		what = append(what, "analysis failed: "+corepipe.Clip(r.Error, maxPanic))
	}
	if len(what) > 0 {
		blocks = append(blocks, block{Type: "section", Text: plain(strings.Join(what, "\n"), maxSection)})
	}
	blocks = append(blocks, block{Type: "section", Fields: rd.fields(r, g)})
	if len(r.TopFrames) > 0 && !private {
		blocks = append(blocks, block{Type: "section", Text: mrkdwn(codeBlock(r.TopFrames))})
	}
	blocks = append(blocks, block{Type: "context", Elements: []*textObj{rd.links(r.ID, g.Signature, g.Count)}})

	fallback := heading + ": " + title
	if where := placeOf(r); where != "" {
		fallback += " (" + where + ")"
	}
	return &payload{Text: fit(escape(fallback), maxFallback), Blocks: blocks}
}

// privilegedTitle names a crash of a privileged process without its
// title, which can quote the panic message.
func privilegedTitle(r *corepipe.Report) string {
	what := "crash"
	if r.Signal != nil && r.Signal.Name != "" {
		what = r.Signal.Name
	}
	if r.Process.Exe != "" {
		return what + " in " + r.Process.Exe
	}
	return what + " of a privileged process"
}

func (rd renderer) fields(r *corepipe.Report, g *corepipe.Group) []*textObj {
	var fs []*textObj
	add := func(label, value string) {
		if value != "" {
			fs = append(fs, plain(label+": "+value, maxField))
		}
	}
	add("Signal", signalOf(r))
	if c := r.Container; c != nil && c.Pod != "" {
		pod := c.Namespace + "/" + c.Pod
		if c.Container != "" {
			pod += " (" + c.Container + ")"
		}
		add("Pod", pod)
		add("Image", c.Image)
	} else {
		add("Process", processOf(r))
	}
	add("Node", r.Node)
	if r.Source != "" && r.Source != corepipe.SourceCore {
		add("From", corepipe.SourceName(r.Source))
	}
	add("Version", r.Version())
	add("Count", fmt.Sprintf("%d, first seen %s", g.Count, when(g.FirstSeen)))
	if o := rd.owner(g.Assignee); o != nil {
		fs = append(fs, o)
	}
	return fs
}

func signalOf(r *corepipe.Report) string {
	if f := r.Fault; f != nil {
		s := f.Name
		if s == "" {
			s = fmt.Sprintf("signal %d", f.Signal)
		}
		if f.CodeName != "" {
			s += " " + f.CodeName
		}
		if f.Address != "" {
			s += " at " + f.Address
		}
		if f.PC != "" {
			s += ", pc " + f.PC
		}
		return s
	}
	if s := r.Signal; s != nil {
		if s.Name != "" {
			return s.Name
		}
		return fmt.Sprintf("signal %d", s.Number)
	}
	return ""
}

func processOf(r *corepipe.Report) string {
	p := r.Process
	name := p.Exe
	if name == "" {
		name = p.Comm
	}
	if p.PID != 0 {
		return fmt.Sprintf("%s (pid %d)", name, p.PID)
	}
	return name
}

func placeOf(r *corepipe.Report) string {
	where := r.Workload()
	if r.Node != "" {
		if where != "" {
			where += " on "
		}
		where += r.Node
	}
	return where
}

// codeBlock shows frames the way the runtime prints them: function, then
// file:line indented.
func codeBlock(frames []corepipe.Frame) string {
	var b strings.Builder
	for _, f := range frames {
		b.WriteString(f.Function)
		b.WriteString("\n")
		if f.File != "" {
			fmt.Fprintf(&b, "\t%s:%d\n", f.File, f.Line)
		}
	}
	const fence = "```"
	return fence + "\n" + fit(codeEscape(strings.TrimSuffix(b.String(), "\n")), maxSection-2*len(fence)-2) + "\n" + fence
}

// links points at the crash and its group in the web UI.
func (rd renderer) links(id, signature string, count int64) *textObj {
	if rd.ui == "" {
		return plain("crash "+id, maxSection)
	}
	return mrkdwn(rd.link("/crashes/"+url.PathEscape(id), "Crash "+escape(id)) + "  ·  " +
		rd.link("/groups/"+url.PathEscape(signature), fmt.Sprintf("Group (%d %s)", count, plural(count, "crash", "crashes"))))
}

// link is a mrkdwn link to path in the UI. The path is escaped, so it has
// no '|' or '>' that would end the link early.
func (rd renderer) link(path, label string) string {
	return "<" + entities.Replace(rd.ui+path) + "|" + label + ">"
}

// followUp is a thread reply under a group's alert: how many more since.
func (rd renderer) followUp(s *notify.Summary) *payload {
	text := summaryLine(s, false)
	blocks := []block{
		{Type: "section", Text: plain(text, maxSection)},
		{Type: "context", Elements: []*textObj{rd.summaryLinks(s)}},
	}
	return &payload{Text: fit(escape(text), maxFallback), Blocks: blocks}
}

// digest lists the groups that crashed without an alert since the last one.
func (rd renderer) digest(d *notify.Digest) *payload {
	var crashes int64
	for _, s := range d.Groups {
		crashes += s.Count
	}
	crashes += d.MoreCrashes
	groups := len(d.Groups) + d.MoreGroups
	heading := fmt.Sprintf("Crash digest: %d %s in %d %s", crashes, plural(crashes, "crash", "crashes"), groups, plural(int64(groups), "group", "groups"))
	if groups == 0 {
		heading = "Crash digest"
	}
	blocks := []block{
		{Type: "header", Text: plain(heading, maxHeader)},
		{Type: "context", Elements: []*textObj{plain("Since "+when(d.Since)+", crashes not announced on their own.", maxSection)}},
	}
	for i := range d.Groups {
		s := &d.Groups[i]
		blocks = append(blocks,
			block{Type: "section", Text: plain(summaryLine(s, true), maxSection)},
			block{Type: "context", Elements: []*textObj{rd.summaryLinks(s)}})
	}
	if d.MoreGroups > 0 {
		blocks = append(blocks, block{Type: "section", Text: plain(fmt.Sprintf("…and %d more %s with %d %s.",
			d.MoreGroups, plural(int64(d.MoreGroups), "group", "groups"), d.MoreCrashes, plural(d.MoreCrashes, "crash", "crashes")), maxSection)})
	}
	if d.Unanalysed > 0 {
		text := fmt.Sprintf("%d %s could not be analysed.", d.Unanalysed, plural(d.Unanalysed, "crash", "crashes"))
		if rd.ui != "" {
			text += " " + rd.link("/", "See the crash list.")
		}
		blocks = append(blocks, block{Type: "section", Text: mrkdwn(text)})
	}
	return &payload{Text: fit(escape(heading), maxFallback), Blocks: blocks}
}

// summaryLine says how many crashes of a group went unannounced, with the
// group's title when it stands alone in a digest.
func summaryLine(s *notify.Summary, withTitle bool) string {
	var b strings.Builder
	if withTitle {
		fmt.Fprintf(&b, "%d × %s\n", s.Count, orUnknown(s.Title))
	} else {
		fmt.Fprintf(&b, "%d more %s since %s. ", s.Count, plural(s.Count, "crash", "crashes"), when(s.Since))
	}
	fmt.Fprintf(&b, "Last %s", when(s.LastAt))
	if s.LastNode != "" {
		b.WriteString(" on " + s.LastNode)
	}
	if s.LastWorkload != "" {
		b.WriteString(" (" + s.LastWorkload + ")")
	}
	fmt.Fprintf(&b, "; %d in all since %s.", s.Total, when(s.FirstSeen))
	return b.String()
}

func (rd renderer) summaryLinks(s *notify.Summary) *textObj {
	if rd.ui == "" {
		return plain("latest crash "+s.LastID, maxSection)
	}
	parts := []string{rd.link("/groups/"+url.PathEscape(s.Signature), "Group")}
	if corepipe.ValidID(s.LastID) {
		parts = append(parts, rd.link("/crashes/"+s.LastID, "Latest crash"))
	}
	return mrkdwn(strings.Join(parts, "  ·  "))
}

func when(t time.Time) string {
	if t.IsZero() {
		return "at an unknown time"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// resolvedWhen says how a group was resolved, as the group page does.
func resolvedWhen(t *corepipe.Triage) string {
	switch t.ResolvedIn {
	case "":
		return when(t.DecidedAt)
	case corepipe.ResolvedNextRelease:
		return "in the release after " + orUnknown(t.Baseline)
	}
	return "in " + t.ResolvedIn
}

var kernelHeadings = map[notify.Kind]string{
	notify.KindNew:       "Kernel panic",
	notify.KindRegressed: "Kernel panic regressed",
	notify.KindSpike:     "Kernel panic spike",
	notify.KindReopened:  "Kernel panic no longer ignored",
}

// maxKernelFrames is how much of a kernel's call trace a message shows.
const maxKernelFrames = 8

// kernelAlert is the message about a node whose kernel panicked: which
// node, the panic line and its cause, the pods that died with it, and the
// trace.
func (rd renderer) kernelAlert(m *notify.Message) *payload {
	r, g, k := m.Report, m.Group, m.Report.Kernel
	heading := kernelHeadings[m.Kind]
	node := orUnknown(r.Node)
	title := strings.TrimPrefix(r.Headline(), "kernel panic: ")
	blocks := []block{{Type: "header", Text: plain(heading+" on "+node+": "+title, maxHeader)}}

	var what []string
	if m.Kind == notify.KindSpike && m.Spike != nil {
		what = append(what, fmt.Sprintf("More than %d kernel panics within %s.", m.Spike.Count, m.Spike.Window))
	}
	if k.Message != "" {
		what = append(what, "Kernel panic - not syncing: "+corepipe.Clip(k.Message, maxPanic))
	}
	if k.FirstBug != "" {
		what = append(what, "Cause: "+corepipe.Clip(k.FirstBug, maxPanic))
	}
	if len(what) > 0 {
		blocks = append(blocks, block{Type: "section", Text: plain(strings.Join(what, "\n"), maxSection)})
	}

	var fs []*textObj
	add := func(label, value string) {
		if value != "" {
			fs = append(fs, plain(label+": "+value, maxField))
		}
	}
	add("Node", node)
	add("Kernel", k.Release)
	if t := k.Task; t != nil {
		task := fmt.Sprintf("%s (PID %d, CPU %d)", orUnknown(t.Comm), t.PID, t.CPU)
		if len(t.Taints) > 0 {
			task += ", tainted: " + strings.Join(t.Taints, ", ")
		}
		add("Task", task)
	}
	add("Pods", podsOf(k.Pods))
	add("From", corepipe.SourceName(r.Source))
	add("Count", fmt.Sprintf("%d, first seen %s", g.Count, when(g.FirstSeen)))
	if o := rd.owner(g.Assignee); o != nil {
		fs = append(fs, o)
	}
	blocks = append(blocks, block{Type: "section", Fields: fs})
	if trace := kernelTrace(k); trace != "" {
		blocks = append(blocks, block{Type: "section", Text: mrkdwn(trace)})
	}
	blocks = append(blocks, block{Type: "context", Elements: []*textObj{rd.links(r.ID, g.Signature, g.Count)}})

	fallback := fmt.Sprintf("%s on %s: %s (%d %s)", heading, node, title, len(k.Pods), plural(int64(len(k.Pods)), "pod", "pods"))
	return &payload{Text: fit(escape(fallback), maxFallback), Blocks: blocks}
}

// podsOf names the pods a panic took down, as many as fit in a field.
func podsOf(pods []corepipe.PodRef) string {
	if len(pods) == 0 {
		return "none known"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d: ", len(pods))
	for i, p := range pods {
		name := p.Namespace + "/" + p.Pod
		if i > 0 {
			name = ", " + name
		}
		more := fmt.Sprintf(" and %d more", len(pods)-i)
		if b.Len()+len(name)+len(" and 999999 more") > maxField-len("Pods: ") {
			b.WriteString(more)
			break
		}
		b.WriteString(name)
	}
	return b.String()
}

// kernelTrace is the top of the call trace after the panic machinery, as
// the kernel prints it.
func kernelTrace(k *corepipe.KernelPanic) string {
	frames := corepipe.KernelTopFrames(k, maxKernelFrames)
	if len(frames) == 0 {
		return ""
	}
	var b strings.Builder
	for _, f := range frames {
		b.WriteString(f.Function)
		if f.Offset != "" {
			b.WriteString("+" + f.Offset)
			if f.Size != "" {
				b.WriteString("/" + f.Size)
			}
		}
		if f.Module != "" {
			b.WriteString(" [" + f.Module + "]")
		}
		b.WriteString("\n")
	}
	const fence = "```"
	return fence + "\n" + fit(codeEscape(strings.TrimSuffix(b.String(), "\n")), maxSection-2*len(fence)-2) + "\n" + fence
}

// Package gotraceback parses what the Go runtime prints on stderr when a
// program dies (with GOTRACEBACK=crash: runtime frames, gp/m fields, the
// stacks of the other Ms) and compares it with a corepipe.Report. It is the
// oracle of the end-to-end tests: a report of a real crash must say what the
// runtime itself said.
package gotraceback

import (
	"fmt"
	"github.com/corepipe/corepipe/gotrace"
	"regexp"
	"strconv"
	"strings"
)

// Dump is one crash as the runtime printed it.
type Dump struct {
	// Kind is "panic", "fatal error" or "signal" (a fatal signal the runtime
	// did not turn into a panic), "" when the output shows none.
	Kind string
	// Message follows "panic: " or "fatal error: ", or is the signal line
	// ("SIGSEGV: segmentation violation"). The runtime indents continuation
	// lines and chained panics with a tab; Message has them without it:
	// "first [recovered]\npanic: second".
	Message string
	// Signal is the original fault, from "[signal …]" or from the
	// "PC=… sigcode=… addr=…" line of a signal crash.
	Signal *Signal
	// CrashingGoroutine is the goroutine printed first when it was running
	// or in a syscall; 0 when none crashed (a deadlock).
	CrashingGoroutine int64
	// Goroutines in the order printed, each once (the runtime may print one
	// twice with GOTRACEBACK=crash; the fuller block is kept). The g0 stacks
	// of other Ms ("goroutine 0") are not goroutines and are left out.
	Goroutines []Goroutine
	// RuntimeStack is the system stack a fatal error was thrown on, which
	// the runtime prints first as "runtime stack:" (thread exhaustion, a
	// deadlock, a stack overflow's newstack), innermost first; nil when
	// the throw was on a goroutine's stack.
	RuntimeStack []Frame
}

// Signal is a fault as the runtime printed it.
type Signal struct {
	Name    string // "SIGSEGV"
	Code    int    // -1 when not printed
	Address string // "0x0"
	PC      string // "0x4865c4"
}

// Goroutine is one "goroutine N […]:" block.
type Goroutine struct {
	ID          int64
	Status      string // "chan receive"; suffixes such as " (scan)" removed
	WaitMinutes int64
	Locked      bool // ", locked to thread"
	Frames      []Frame
	// ElidedAt is the index in Frames where "...N frames elided..." was
	// printed (Elided frames were left out there); -1 when none were.
	ElidedAt int
	Elided   int
	// CreatedBy is the creating function, CreatedIn its goroutine (0 when
	// not printed).
	CreatedBy string
	CreatedIn int64
}

// Frame is one printed frame. Inlined frames carry no offset.
type Frame struct {
	Function string // arguments stripped: "main.(*server).retries"
	File     string
	Line     int
	Offset   uint64 // the +0x… after the line
	Inlined  bool   // printed with "(...)"
}

var (
	reGoroutine = regexp.MustCompile(`^goroutine (\d+)(?: gp=\S+)?(?: m=\S+)?(?: mp=\S+)? \[(.*)\]:$`)
	reFileLine  = regexp.MustCompile(`^\t(.*):(\d+)(?: \+0x([0-9a-f]+))?(?: .*)?$`)
	reSigBrack  = regexp.MustCompile(`^\[signal (SIG\w+|signal \d+)(?:: [^\]]*?)? code=(-?0x[0-9a-f]+|-?\d+) addr=(0x[0-9a-f]+) pc=(0x[0-9a-f]+)\]$`)
	reSigHeader = regexp.MustCompile(`^(SIG\w+|signal \d+): .+$`)
	rePCLine    = regexp.MustCompile(`^PC=(0x[0-9a-f]+) m=\S+ sigcode=(-?\d+)(?: addr=(0x[0-9a-f]+))?`)
	reCreatedBy = regexp.MustCompile(`^created by (.+?)(?: in goroutine (\d+))?$`)
	reElided    = regexp.MustCompile(`^\.\.\.(\d+|additional) frames elided\.\.\.$`)
	reMinutes   = regexp.MustCompile(`^(\d+) minutes$`)
)

// Parse reads the runtime's output. Lines it does not know (the program's
// own output, register dumps) are skipped; it fails only when the output
// holds no crash at all.
func Parse(stderr string) (*Dump, error) {
	p := &parser{d: &Dump{}, index: map[int64]int{}}
	lines := strings.Split(strings.ReplaceAll(stderr, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		i = p.line(lines, i)
	}
	p.flush()
	if p.d.Kind == "" && len(p.d.Goroutines) == 0 {
		return nil, fmt.Errorf("no Go crash in %d lines of output", len(lines))
	}
	return p.d, nil
}

type parser struct {
	d       *Dump
	cur     *Goroutine // the block being read, nil outside one
	skip    bool       // inside a "runtime stack:" block
	system  bool       // the block being skipped is the first "runtime stack:"
	headers bool       // the first signal header was read: later ones are other Ms'
	blocks  int
	index   map[int64]int // goroutine id → position in d.Goroutines
}

// line consumes lines[i] (and the lines that belong to it) and returns the
// index of the last line consumed.
func (p *parser) line(lines []string, i int) int {
	l := lines[i]
	d := p.d
	switch {
	case l == "":
		p.flush()
		p.skip, p.system = false, false
	case strings.HasPrefix(l, "panic: ") && d.Kind == "":
		d.Kind = "panic"
		return p.message(lines, i, strings.TrimPrefix(l, "panic: "))
	case strings.HasPrefix(l, "fatal error: ") && (d.Kind == "" || d.Kind == "panic"):
		// A throw while panicking is what killed the process.
		d.Kind = "fatal error"
		return p.message(lines, i, strings.TrimPrefix(l, "fatal error: "))
	case reSigBrack.MatchString(l):
		m := reSigBrack.FindStringSubmatch(l)
		code, _ := strconv.ParseInt(m[2], 0, 64)
		d.Signal = &Signal{Name: m[1], Code: int(code), Address: m[3], PC: m[4]}
	case l == "runtime stack:":
		p.flush()
		p.skip = true
		p.system = d.RuntimeStack == nil
	case reGoroutine.MatchString(l):
		p.flush()
		m := reGoroutine.FindStringSubmatch(l)
		id, _ := strconv.ParseInt(m[1], 10, 64)
		g := &Goroutine{ID: id, ElidedAt: -1}
		parseStatus(g, m[2])
		if p.blocks == 0 && id != 0 && (g.Status == "running" || g.Status == "syscall") {
			d.CrashingGoroutine = id
		}
		p.blocks++
		p.cur = g
	case p.cur != nil || p.skip:
		return p.frame(lines, i)
	case !p.headers && d.Kind == "" && reSigHeader.MatchString(l) && i+1 < len(lines) && rePCLine.MatchString(lines[i+1]):
		p.headers = true
		d.Kind, d.Message = "signal", l
		m := rePCLine.FindStringSubmatch(lines[i+1])
		d.Signal = &Signal{Name: strings.SplitN(l, ":", 2)[0], Code: sigcode(m[2]), Address: m[3], PC: m[1]}
		return i + 1
	case reSigHeader.MatchString(l) && i+1 < len(lines) && rePCLine.MatchString(lines[i+1]):
		// Another M's "SIGQUIT: quit" header under GOTRACEBACK=crash.
		return i + 1
	}
	return i
}

// sigcode reads the sigcode of a "PC=… sigcode=…" line. The runtime prints
// it unsigned on some platforms (linux/amd64: a signal from tgkill,
// SI_TKILL, is sigcode=18446744073709551610): it is the si_code int.
func sigcode(s string) int {
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return int(int32(u))
	}
	n, _ := strconv.Atoi(s)
	return n
}

// message reads a panic or fatal error message and its tab-indented
// continuation lines.
func (p *parser) message(lines []string, i int, first string) int {
	msg := []string{first}
	for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "\t") {
		i++
		msg = append(msg, strings.TrimPrefix(lines[i], "\t"))
	}
	p.d.Message = strings.Join(msg, "\n")
	return i
}

// frame reads one frame (function line and file line) or created-by.
func (p *parser) frame(lines []string, i int) int {
	l := lines[i]
	var file string
	var line int
	var off uint64
	hasFile := false
	if i+1 < len(lines) {
		if m := reFileLine.FindStringSubmatch(lines[i+1]); m != nil {
			file = m[1]
			line, _ = strconv.Atoi(m[2])
			if m[3] != "" {
				off, _ = strconv.ParseUint(m[3], 16, 64)
			}
			hasFile = true
		}
	}
	g := p.cur
	switch {
	case p.skip:
		if p.system && hasFile && strings.HasSuffix(l, ")") {
			fn, args := gotrace.SplitArgs(l)
			p.d.RuntimeStack = append(p.d.RuntimeStack, Frame{Function: fn, File: file, Line: line, Offset: off, Inlined: args == "..."})
		}
	case g == nil:
	case reElided.MatchString(l):
		m := reElided.FindStringSubmatch(l)
		g.ElidedAt = len(g.Frames)
		g.Elided, _ = strconv.Atoi(m[1]) // "additional": count unknown
	case reCreatedBy.MatchString(l):
		m := reCreatedBy.FindStringSubmatch(l)
		g.CreatedBy = m[1]
		g.CreatedIn, _ = strconv.ParseInt(m[2], 10, 64)
	case hasFile && strings.HasSuffix(l, ")"):
		fn, args := gotrace.SplitArgs(l)
		g.Frames = append(g.Frames, Frame{Function: fn, File: file, Line: line, Offset: off, Inlined: args == "..."})
	}
	if hasFile {
		return i + 1
	}
	return i
}

// flush ends the current goroutine block.
func (p *parser) flush() {
	g := p.cur
	p.cur = nil
	if g == nil || g.ID == 0 {
		return
	}
	if at, ok := p.index[g.ID]; ok {
		if len(g.Frames) > len(p.d.Goroutines[at].Frames) {
			p.d.Goroutines[at] = *g
		}
		return
	}
	p.index[g.ID] = len(p.d.Goroutines)
	p.d.Goroutines = append(p.d.Goroutines, *g)
}

// parseStatus splits "chan receive (scan), 3 minutes, locked to thread".
func parseStatus(g *Goroutine, s string) {
	parts := strings.Split(s, ", ")
	st := parts[0]
	for _, suffix := range []string{" (durable)", " (scan)", " (leaked)"} {
		st = strings.TrimSuffix(st, suffix)
	}
	g.Status = st
	for _, part := range parts[1:] {
		if m := reMinutes.FindStringSubmatch(part); m != nil {
			g.WaitMinutes, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if part == "locked to thread" {
			g.Locked = true
		}
	}
}

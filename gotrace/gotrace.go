// Package gotrace reads the traceback the Go runtime prints when a program
// dies — from a container's log, a crash-output file or a pasted stderr —
// into the facts of a corepipe.Report: the panic or fatal error, the fault,
// every goroutine it printed with its frames, the system stack of a throw.
//
// The input is hostile and messy: other goroutines' output and JSON log
// lines are interleaved, lines are cut, the tail may be missing, a log may
// hold several crashes (the last one counts). The parser is a line-at-a-time
// state machine with fixed bounds on what it keeps, so its memory does not
// depend on what the log claims.
package gotrace

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/settings"
)

// Bounds on what one parse keeps; zero fields take the defaults.
type Options struct {
	// MaxGoroutines is how many goroutines are kept; later ones are
	// counted in the report's Lacks.
	MaxGoroutines int
	// MaxFrames is how many frames of one goroutine are kept: the
	// innermost and outermost halves, the rest counted in FramesElided.
	MaxFrames int
	// MaxLine is the longest line looked at; the rest of a longer one is
	// ignored.
	MaxLine int
	// MaxNames bounds the distinct function and file names interned.
	MaxNames int
	// MaxBytes bounds the memory the parse keeps (frames, names,
	// messages), whatever the counts above allow together.
	MaxBytes int
}

// Defaults of Options.
const (
	DefaultMaxGoroutines = 200_000
	DefaultMaxFrames     = 1000
	DefaultMaxLine       = 64 << 10
	DefaultMaxNames      = 1 << 20
	DefaultMaxBytes      = 256 << 20
)

// Approximate costs against MaxBytes of what the parse keeps.
const (
	frameCost     = int(unsafe.Sizeof(corepipe.Frame{}))
	goroutineCost = int(unsafe.Sizeof(corepipe.Goroutine{}))
	// maxMessage bounds a panic message with its continuation lines.
	maxMessage = 64 << 10
)

func (o Options) withDefaults() Options {
	settings.Default(&o.MaxGoroutines, DefaultMaxGoroutines)
	if o.MaxFrames <= 1 {
		o.MaxFrames = DefaultMaxFrames
	}
	settings.Default(&o.MaxLine, DefaultMaxLine)
	settings.Default(&o.MaxNames, DefaultMaxNames)
	settings.Default(&o.MaxBytes, DefaultMaxBytes)
	return o
}

// ErrNoCrash is returned when the input holds no Go crash at all.
var ErrNoCrash = errors.New("no Go crash in the log")

// Parser is the state of one parse. Feed it lines in order with Line, then
// take the result with Report.
type Parser struct {
	o       Options
	lines   int
	c       *crash
	crashes int
	names   map[string]string
	// used is what the parse keeps, against MaxBytes; full is set once
	// it ran out.
	used int
	full bool
}

// spend takes n bytes of the budget, or reports that there are none left.
func (p *Parser) spend(n int) bool {
	if p.used+n > p.o.MaxBytes {
		p.full = true
		return false
	}
	p.used += n
	return true
}

// Crashes is how many crashes the input has started so far: a reader that
// keeps only the last crash's lines starts afresh when it grows.
func (p *Parser) Crashes() int { return p.crashes }

// crash is what was read of the most recent crash.
type crash struct {
	kind, message string
	inMessage     bool // reading the message's tab-indented continuation lines
	fault         *corepipe.Fault
	sigHeader     string // a "SIGSEGV: …" line waiting for its "PC=" line
	sigHeaders    bool   // the first signal header was read: later ones are other Ms'
	crashing      int64
	blocks        int
	goroutines    []corepipe.Goroutine
	index         map[int64]int
	dropped       int // goroutines beyond MaxGoroutines
	cur           *block
	system        *block // the "runtime stack:" of a throw, when printed
	detailed      bool   // headers carried gp=/m=: GOTRACEBACK=system or crash
	elided        bool   // the runtime itself elided frames
	cutFrames     bool   // frames were dropped to keep MaxFrames
	cut           bool   // the last block ended inside a frame: the log stops there
}

// block is a goroutine (or system stack) being read.
type block struct {
	g       corepipe.Goroutine
	system  bool
	pending *corepipe.Frame // a function line waiting for its file line
	foreign int             // foreign lines since pending
	tail    []corepipe.Frame
	next    int // next slot of the tail ring
	created bool
	over    bool // no budget was left for the goroutine itself
}

// NewParser returns a parser with the bounds of o.
func NewParser(o Options) *Parser {
	return &Parser{o: o.withDefaults(), names: map[string]string{}}
}

// Parse reads a whole traceback (plain text lines) with the bounds of o.
func Parse(text string, o Options) (*corepipe.Report, error) {
	p := NewParser(o)
	for l := range strings.SplitSeq(text, "\n") {
		p.Line(l)
	}
	return p.Report()
}

// Line feeds the next line of the input, without its newline.
func (p *Parser) Line(l string) {
	p.lines++
	if len(l) > p.o.MaxLine {
		l = l[:p.o.MaxLine]
	}
	l = strings.TrimSuffix(l, "\r")
	c := p.c
	if c != nil && c.sigHeader != "" {
		header := c.sigHeader
		c.sigHeader = ""
		if m := rePCLine.FindStringSubmatch(l); m != nil {
			if !c.sigHeaders && c.kind == "" {
				c.sigHeaders = true
				code, _ := strconv.Atoi(m[2])
				name, _, _ := strings.Cut(header, ":")
				c.kind, c.message = corepipe.PanicKindSignal, header
				c.fault = &corepipe.Fault{Name: name, Code: code, Address: m[3], PC: m[1]}
			}
			return
		}
	}
	if c != nil && c.inMessage {
		if rest, ok := strings.CutPrefix(l, "\t"); ok && !isFileLine(l) {
			if len(c.message)+1+len(rest) <= maxMessage {
				c.message += "\n" + rest
			}
			return
		}
		c.inMessage = false
	}
	switch {
	case strings.HasPrefix(l, "panic: "):
		c = p.start()
		if c.kind == "" {
			c.kind, c.message, c.inMessage = corepipe.PanicKindPanic, strings.TrimPrefix(l, "panic: "), true
		}
	case strings.HasPrefix(l, "fatal error: "):
		c = p.start()
		if c.kind == "" || c.kind == corepipe.PanicKindPanic {
			// A throw while panicking is what killed the process.
			c.kind, c.message, c.inMessage = corepipe.PanicKindFatal, strings.TrimPrefix(l, "fatal error: "), true
		}
	case isSignalHeader(l):
		if c != nil && c.blocks > 0 && strings.HasPrefix(l, "SIGQUIT: ") {
			// GOTRACEBACK=crash: the other Ms' "SIGQUIT: quit" as the
			// runtime stops them, not a new crash.
			return
		}
		c = p.start()
		c.sigHeader = l
	case strings.HasPrefix(l, "goroutine "):
		if id, detailed, status, ok := goroutineHeader(l); ok {
			p.goroutine(id, detailed, status)
			return
		}
		if c != nil {
			p.frameLine(l)
		}
	case c == nil:
		// Nothing of a crash yet: the program's own output.
	case strings.HasPrefix(l, "[signal "):
		if m := reSigBracket.FindStringSubmatch(l); m != nil && c.fault == nil {
			code, _ := strconv.ParseInt(m[2], 0, 64)
			c.fault = &corepipe.Fault{Name: signalName(m[1]), Code: int(code), Address: m[3], PC: m[4]}
		}
	case l == "runtime stack:":
		p.flush()
		c.cur = &block{system: true}
	default:
		p.frameLine(l)
	}
}

// start returns the crash a start line belongs to: the current one while it
// has no stacks yet (a panic's "[recovered]" chain, a throw inside a
// deferred call), else a new one — the log's last crash is the one reported.
func (p *Parser) start() *crash {
	if p.c == nil || p.c.blocks > 0 {
		p.c = &crash{index: map[int64]int{}}
		p.crashes++
	}
	return p.c
}

func (p *Parser) goroutine(id int64, detailed bool, status string) {
	c := p.c
	if c == nil {
		// Goroutines printed without a panic line before them (a cut
		// log, a SIGQUIT dump whose header was lost): still a crash.
		c = p.start()
	}
	p.flush()
	if detailed {
		c.detailed = true
	}
	b := &block{g: corepipe.Goroutine{ID: id}, over: !p.spend(goroutineCost)}
	parseStatus(&b.g, status)
	if c.blocks == 0 && id != 0 && (b.g.Status == "running" || b.g.Status == "syscall") {
		c.crashing = id
	}
	c.blocks++
	if id == 0 {
		// The g0 stack of another M: not a goroutine.
		b.system = true
		b.g.ID = -1
	}
	c.cur = b
}

// frameLine reads a line inside a block: a function, its file, created-by,
// an elision mark, or a foreign line to skip.
func (p *Parser) frameLine(l string) {
	c := p.c
	b := c.cur
	if b == nil {
		return
	}
	if file, line, pc, ok := fileLine(l); ok {
		if b.pending == nil {
			return
		}
		f := *b.pending
		b.pending = nil
		f.File = p.intern(file)
		f.Line = line
		if pc != "" && p.spend(len(pc)) {
			f.PC = strings.Clone(pc)
		}
		if b.created {
			return
		}
		p.add(b, f)
		return
	}
	if b.pending != nil {
		b.foreign++
		if b.foreign > maxForeign {
			b.pending = nil
		}
	}
	switch {
	case l == "":
		return
	case strings.HasPrefix(l, "created by "):
		fn := strings.TrimPrefix(l, "created by ")
		if i := strings.Index(fn, " in goroutine "); i >= 0 {
			fn = fn[:i]
		}
		b.g.CreatedBy = p.intern(fn)
		b.created = true
		b.pending = &corepipe.Frame{}
		b.foreign = 0
	case strings.HasPrefix(l, "...") && reElided.MatchString(l):
		m := reElided.FindStringSubmatch(l)
		n, _ := strconv.Atoi(m[1])
		b.g.FramesElided += n
		c.elided = true
	case isFunctionLine(l):
		fn, _ := SplitArgs(l)
		b.pending = &corepipe.Frame{Function: p.intern(fn)}
		b.foreign = 0
	}
}

func isFileLine(l string) bool {
	_, _, _, ok := fileLine(l)
	return ok
}

// maxForeign is how many foreign lines may stand between a function line
// and its file line (another goroutine's output written in between).
const maxForeign = 4

// add keeps a frame within MaxFrames: the innermost half in order, the
// outermost half in a ring.
func (p *Parser) add(b *block, f corepipe.Frame) {
	half := p.o.MaxFrames / 2
	if len(b.g.Frames)+len(b.tail) < p.o.MaxFrames && !p.spend(frameCost) {
		b.g.FramesElided++
		return
	}
	if len(b.g.Frames) < p.o.MaxFrames-half {
		b.g.Frames = append(b.g.Frames, f)
		return
	}
	if len(b.tail) < half {
		b.tail = append(b.tail, f)
		return
	}
	b.tail[b.next] = f
	b.next = (b.next + 1) % half
	b.g.FramesElided++
	p.c.cutFrames = true
}

// flush ends the block being read.
func (p *Parser) flush() {
	c := p.c
	b := c.cur
	c.cur = nil
	if b == nil {
		return
	}
	c.cut = b.pending != nil && !b.created
	b.g.Frames = append(b.g.Frames, b.tail[b.next:]...)
	b.g.Frames = append(b.g.Frames, b.tail[:b.next]...)
	b.tail = nil
	if b.system {
		if b.g.ID != -1 && c.system == nil && len(b.g.Frames) > 0 {
			c.system = b
		}
		return
	}
	if at, ok := c.index[b.g.ID]; ok {
		// GOTRACEBACK=crash may print the crashing goroutine twice:
		// keep the fuller block.
		if len(b.g.Frames) > len(c.goroutines[at].Frames) {
			c.goroutines[at] = b.g
		}
		return
	}
	if len(c.goroutines) >= p.o.MaxGoroutines || b.over {
		c.dropped++
		return
	}
	c.index[b.g.ID] = len(c.goroutines)
	c.goroutines = append(c.goroutines, b.g)
}

func (p *Parser) intern(s string) string {
	if v, ok := p.names[s]; ok {
		return v
	}
	if !p.spend(len(s)) {
		return "?"
	}
	s = strings.Clone(s)
	if len(p.names) < p.o.MaxNames {
		p.names[s] = s
	}
	return s
}

// Report returns what the input said about its last crash: Panic, Fault,
// CrashingGoroutine, Goroutines (crashing first), the system stack of a
// throw as a thread, and what the traceback lacks. Kind is "go"; the caller
// sets Source and the rest of the report.
func (p *Parser) Report() (*corepipe.Report, error) {
	c := p.c
	if c == nil {
		return nil, fmt.Errorf("%w (%d lines read)", ErrNoCrash, p.lines)
	}
	p.flush()
	if c.kind == "" && len(c.goroutines) == 0 {
		return nil, fmt.Errorf("%w (%d lines read)", ErrNoCrash, p.lines)
	}
	r := &corepipe.Report{Schema: corepipe.ReportSchema, Status: corepipe.StatusAnalyzed, Kind: corepipe.KindGo}
	if c.kind != "" {
		r.Panic = &corepipe.Panic{Kind: c.kind, Message: c.message}
	}
	if f := c.fault; f != nil {
		fc := *f
		fc.Signal = signalNumber(fc.Name)
		fc.CodeName = corepipe.SignalCodeName(fc.Signal, fc.Code)
		r.Fault = &fc
		if r.Panic == nil {
			r.Panic = &corepipe.Panic{Kind: corepipe.PanicKindSignal, Message: fc.Name}
		}
	}
	r.Goroutines = c.goroutines
	if _, ok := c.index[c.crashing]; ok && c.crashing != 0 {
		r.CrashingGoroutine = c.crashing
		if at := c.index[c.crashing]; at != 0 {
			g := r.Goroutines[at]
			copy(r.Goroutines[1:at+1], r.Goroutines[:at])
			r.Goroutines[0] = g
		}
	}
	if s := c.system; s != nil {
		th := corepipe.Thread{Frames: s.g.Frames}
		if len(s.g.Frames) > 0 {
			top := s.g.Frames[0]
			th.Function, th.File, th.Line = top.Function, top.File, top.Line
		}
		r.Threads = []corepipe.Thread{th}
	}
	r.Lacks = c.lacks(p)
	return r, nil
}

// lacks says what this traceback cannot show.
func (c *crash) lacks(p *Parser) []string {
	var out []string
	switch {
	case len(c.goroutines) == 1 && c.crashing != 0 && !c.detailed:
		out = append(out, "only the crashing goroutine: the runtime printed no others (GOTRACEBACK unset or single)")
	case !c.detailed && len(c.goroutines) > 0:
		out = append(out, "runtime frames: the runtime hides them unless GOTRACEBACK=system or crash")
	}
	if c.elided {
		out = append(out, "frames elided by the runtime")
	}
	if c.cutFrames {
		out = append(out, fmt.Sprintf("frames beyond %d per goroutine", p.o.MaxFrames))
	}
	if c.dropped > 0 {
		out = append(out, fmt.Sprintf("%d goroutines beyond the first %d", c.dropped, len(c.goroutines)))
	}
	if p.full {
		out = append(out, fmt.Sprintf("frames and names beyond the parse's %d MiB budget", p.o.MaxBytes>>20))
	}
	if c.cut || (len(c.goroutines) == 0 && c.system == nil) {
		out = append(out, "the end of the traceback: the log stops inside it")
	}
	out = append(out, "memory and registers: there is no core")
	return out
}

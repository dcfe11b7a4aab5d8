// Package kernlog reads a Linux kernel log — a netconsole capture, a pstore
// record, a kdump dmesg, a serial console log, syslog's kernel lines — and
// finds the panic in it: the message, the first BUG/Oops line, the task,
// RIP, call trace and modules. It is pure: bytes in, a KernelPanic out.
package kernlog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// ErrNoPanic is returned when a log holds no kernel panic.
var ErrNoPanic = errors.New("no kernel panic in the log")

// Bounds on what one log may make the parser keep.
const (
	// MaxLine is the longest line kept; the kernel's own records are
	// under 1 KiB, the rest of a longer line is dropped.
	MaxLine = 8 << 10
	// MaxFrames is how many call-trace frames are kept.
	MaxFrames = 128
	// maxModules bounds "Modules linked in:".
	maxModules = 512
)

// Line is one record of a kernel log without its prefixes.
type Line struct {
	// Text is the record's text.
	Text string
	// Level is the printk level (0 emerg … 7 debug), -1 when unknown.
	Level int
	// Uptime is the "[  123.456789]" timestamp without brackets, "" when
	// the line had none.
	Uptime string
}

// ParseLine strips what precedes a kernel record's text: a syslog or
// journal prefix ("Dec  1 20:38:54 node kernel: "), a level ("<6>"), a
// timestamp ("[  123.456789]") and a caller id ("[    T1]").
func ParseLine(s string) Line {
	l := Line{Level: -1}
	s = strings.TrimRight(s, "\r\n")
	if i := strings.Index(s, " kernel: "); i >= 0 && i < 64 && !strings.HasPrefix(s, "[") && !strings.HasPrefix(s, "<") {
		s = s[i+len(" kernel: "):]
	}
	if len(s) >= 3 && s[0] == '<' {
		if j := strings.IndexByte(s, '>'); j > 1 && j <= 4 {
			if n, err := strconv.Atoi(s[1:j]); err == nil {
				l.Level = n & 7
				s = s[j+1:]
			}
		}
	}
	if len(s) > 0 && s[0] == '[' {
		if j := strings.IndexByte(s, ']'); j > 0 {
			ts := strings.TrimSpace(s[1:j])
			if isUptime(ts) {
				l.Uptime = ts
				s = strings.TrimPrefix(s[j+1:], " ")
			}
		}
	}
	if len(s) > 0 && s[0] == '[' {
		// CONFIG_PRINTK_CALLER: "[    T1] " or "[    C0] ".
		if j := strings.IndexByte(s, ']'); j > 2 && j < 12 {
			id := strings.TrimSpace(s[1:j])
			if len(id) > 1 && (id[0] == 'T' || id[0] == 'C') && allDigits(id[1:]) {
				s = strings.TrimPrefix(s[j+1:], " ")
			}
		}
	}
	l.Text = s
	return l
}

func isUptime(s string) bool {
	sec, frac, ok := strings.Cut(s, ".")
	return ok && allDigits(sec) && allDigits(frac)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Parser finds the panic in a kernel log fed to it line by line.
type Parser struct {
	k corepipe.KernelPanic
	// dump is the dump the report shows: the first one that began with
	// a BUG/Oops line (the cause), else the panic's own.
	dump       dump
	started    bool // dump began with a BUG/Oops line
	frozen     bool // the panic came after dump: nothing later is its
	sawPanic   bool
	inTrace    bool
	ended      bool
	lostFrames int
}

type dump struct {
	task     *corepipe.KernelTask
	release  string
	hardware string
	rip      string
	ripUser  bool
	frames   []corepipe.KernelFrame
	modules  []string
	hasTrace bool
}

// NewParser returns a parser with nothing read.
func NewParser() *Parser { return &Parser{} }

// Add reads one line of the log.
func (p *Parser) Add(raw string) {
	if p.ended {
		return
	}
	l := ParseLine(raw)
	t := l.Text
	if p.inTrace {
		if f, ok := parseFrame(t); ok {
			if len(p.dump.frames) < MaxFrames {
				p.dump.frames = append(p.dump.frames, f)
			} else {
				p.lostFrames++
			}
			return
		}
		p.inTrace = false
		if isTraceMarker(t) {
			p.inTrace = strings.TrimSpace(t) != "</TASK>"
			return
		}
	}
	switch {
	case strings.HasPrefix(t, "Linux version "):
		if p.sawPanic {
			// The next boot: the panic was the last one's.
			p.ended = true
			return
		}
		*p = Parser{}
		p.k.Release, _, _ = strings.Cut(strings.TrimPrefix(t, "Linux version "), " ")
	case strings.HasPrefix(t, "Kernel panic - not syncing"):
		if p.sawPanic {
			return // a nested panic repeats itself
		}
		p.sawPanic = true
		p.k.Message = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(t, "Kernel panic - not syncing"), ":"))
		p.k.Uptime = l.Uptime
		if p.started {
			p.frozen = true
		} else {
			p.dump = dump{}
		}
	case strings.HasPrefix(t, "---[ end Kernel panic"):
		p.ended = true
	case p.frozen:
	case isBugLine(t):
		if p.k.FirstBug == "" || (isWarning(p.k.FirstBug) && !isWarning(t)) {
			p.k.FirstBug = t
		}
		if !p.started && !p.sawPanic {
			p.started = true
			p.dump = dump{}
		}
	case strings.HasPrefix(t, "Modules linked in:"):
		mods := strings.Fields(strings.TrimPrefix(t, "Modules linked in:"))
		if len(mods) > maxModules {
			mods = mods[:maxModules]
		}
		p.dump.modules = mods
	case strings.HasPrefix(t, "CPU: "):
		if task, release, ok := parseTask(t); ok && p.dump.task == nil {
			p.dump.task, p.dump.release = task, release
		}
	case strings.HasPrefix(t, "Hardware name: "):
		p.dump.hardware = strings.TrimPrefix(t, "Hardware name: ")
	case strings.HasPrefix(t, "RIP: "):
		if p.dump.rip == "" {
			rip := strings.TrimPrefix(t, "RIP: ")
			p.dump.ripUser = strings.HasPrefix(rip, "0033:") || strings.HasPrefix(rip, "0023:")
			p.dump.rip = rip
		}
	case strings.TrimSpace(t) == "Call Trace:":
		// A second "Call Trace:" in one dump (an IRQ stack, a hung
		// task's) continues the first.
		p.dump.hasTrace = true
		p.inTrace = true
	}
}

// Result is what the log said, ErrNoPanic when it held no panic.
func (p *Parser) Result() (*corepipe.KernelPanic, error) {
	if !p.sawPanic {
		return nil, ErrNoPanic
	}
	k := p.k
	d := p.dump
	k.Task, k.Hardware, k.RIP, k.RIPUser, k.CallTrace, k.Modules = d.task, d.hardware, d.rip, d.ripUser, d.frames, d.modules
	if k.Release == "" {
		k.Release = d.release
	}
	switch {
	case !d.hasTrace:
		k.Incomplete = append(k.Incomplete, "no call trace in the log")
	case p.inTrace:
		k.Incomplete = append(k.Incomplete, "the call trace is cut: the log ends inside it")
	}
	if p.lostFrames > 0 {
		k.Incomplete = append(k.Incomplete, fmt.Sprintf("%d call-trace frames past the first %d not kept", p.lostFrames, MaxFrames))
	}
	k.Complete = len(k.Incomplete) == 0
	return &k, nil
}

// Parse reads a kernel log from r, streaming, and returns its panic.
func Parse(r io.Reader) (*corepipe.KernelPanic, error) {
	p := NewParser()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readLine(br)
		if line != "" || err == nil {
			p.Add(line)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read kernel log: %w", err)
		}
	}
	return p.Result()
}

// readLine reads one line, keeping at most MaxLine bytes of it.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if room := MaxLine - len(b); room > 0 {
			if len(chunk) > room {
				b = append(b, chunk[:room]...)
			} else {
				b = append(b, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return string(b), err
	}
}

func isBugLine(t string) bool {
	return strings.HasPrefix(t, "BUG:") || strings.HasPrefix(t, "Oops:") || strings.HasPrefix(t, "general protection fault") ||
		isWarning(t) || strings.HasPrefix(t, "kernel BUG at ") || strings.HasPrefix(t, "Unable to handle kernel") ||
		strings.HasPrefix(t, "INFO: task ") || strings.Contains(t, "BUG: soft lockup") || strings.Contains(t, "Watchdog detected hard LOCKUP") ||
		strings.HasPrefix(t, "mce: [Hardware Error]")
}

func isWarning(t string) bool { return strings.HasPrefix(t, "WARNING:") }

func isTraceMarker(t string) bool {
	switch strings.TrimSpace(t) {
	case "<TASK>", "</TASK>", "<IRQ>", "</IRQ>", "<NMI>", "</NMI>", "<SOFTIRQ>", "</SOFTIRQ>":
		return true
	}
	return false
}

// parseFrame reads " func+0x1a/0x30 [module]", " ? func+0x…", and the older
// " [<ffffffff81234567>] func+0x…" form.
func parseFrame(t string) (corepipe.KernelFrame, bool) {
	var f corepipe.KernelFrame
	s := strings.TrimSpace(t)
	if strings.HasPrefix(s, "[<") {
		j := strings.Index(s, ">]")
		if j < 0 {
			return f, false
		}
		s = strings.TrimSpace(s[j+2:])
	}
	if strings.HasPrefix(s, "? ") {
		f.Unreliable = true
		s = s[2:]
	}
	sym, mod, hasMod := strings.Cut(s, " ")
	if hasMod {
		mod = strings.TrimSpace(mod)
		if len(mod) < 3 || mod[0] != '[' || mod[len(mod)-1] != ']' {
			return f, false
		}
		f.Module = mod[1 : len(mod)-1]
	}
	fn, off, ok := strings.Cut(sym, "+")
	if !ok || fn == "" {
		return f, false
	}
	o, size, ok := strings.Cut(off, "/")
	if !ok || !strings.HasPrefix(o, "0x") || !strings.HasPrefix(size, "0x") {
		return f, false
	}
	f.Function, f.Offset, f.Size = fn, o, size
	return f, true
}

// parseTask reads "CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-57-amd64 #1
// Debian 6.1.192-3" and the newer "CPU: 0 UID: 0 PID: 1 Comm: …" form.
func parseTask(t string) (*corepipe.KernelTask, string, bool) {
	var task corepipe.KernelTask
	rest := strings.TrimPrefix(t, "CPU: ")
	cpu, rest, ok := strings.Cut(rest, " ")
	if !ok {
		return nil, "", false
	}
	var err error
	if task.CPU, err = strconv.Atoi(cpu); err != nil {
		return nil, "", false
	}
	if strings.HasPrefix(rest, "UID: ") {
		_, rest, _ = strings.Cut(strings.TrimPrefix(rest, "UID: "), " ")
	}
	if !strings.HasPrefix(rest, "PID: ") {
		return nil, "", false
	}
	pid, rest, ok := strings.Cut(strings.TrimPrefix(rest, "PID: "), " ")
	if !ok {
		return nil, "", false
	}
	if task.PID, err = strconv.Atoi(pid); err != nil || !strings.HasPrefix(rest, "Comm: ") {
		return nil, "", false
	}
	rest = strings.TrimPrefix(rest, "Comm: ")
	var after string
	if i := strings.Index(rest, " Not tainted "); i >= 0 {
		task.Comm, after = rest[:i], rest[i+len(" Not tainted "):]
	} else if i := strings.Index(rest, " Tainted: "); i >= 0 {
		task.Comm, after = rest[:i], rest[i+len(" Tainted: "):]
		// The taint field is letters and spaces up to the release, which
		// starts with a digit.
		j := 0
		for j < len(after) && (after[j] == ' ' || after[j] >= 'A' && after[j] <= 'Z') {
			j++
		}
		task.Tainted = strings.TrimSpace(after[:j])
		task.Taints = corepipe.TaintNames(task.Tainted)
		after = after[j:]
	} else {
		task.Comm = rest
	}
	release, _, _ := strings.Cut(strings.TrimSpace(after), " ")
	return &task, release, true
}

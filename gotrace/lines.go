package gotrace

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// The line forms of the runtime's traceback, Go 1.21 to 1.26.
var (
	// "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4553a2]"
	reSigBracket = regexp.MustCompile(`^\[signal (SIG\w+|signal \d+)(?:: [^\]]*?)? code=(-?0x[0-9a-f]+|-?\d+) addr=(0x[0-9a-f]+) pc=(0x[0-9a-f]+)\]`)
	// "SIGSEGV: segmentation violation" before a "PC=" line.
	reSigHeader = regexp.MustCompile(`^(SIG[A-Z0-9]+|signal \d+): \S`)
	rePCLine    = regexp.MustCompile(`^PC=(0x[0-9a-f]+) m=\S+ sigcode=(-?\d+)(?: addr=(0x[0-9a-f]+))?`)
	reElided    = regexp.MustCompile(`^\.\.\.(\d+|additional) frames elided\.\.\.$`)
	reMinutes   = regexp.MustCompile(`^(\d+) minutes$`)
)

// fileLine parses a frame's file line by hand: it is every other line of a
// traceback, and a regular expression there was most of the parse's time.
func fileLine(l string) (file string, line int, pc string, ok bool) {
	if len(l) < 4 || l[0] != '\t' {
		return "", 0, "", false
	}
	rest := l[1:]
	head := rest
	if i := strings.Index(rest, " +0x"); i >= 0 {
		head = rest[:i]
	} else if i := strings.Index(rest, " fp=0x"); i >= 0 {
		head = rest[:i]
	} else {
		head = strings.TrimRight(rest, " ")
	}
	colon := strings.LastIndexByte(head, ':')
	if colon <= 0 || colon == len(head)-1 {
		return "", 0, "", false
	}
	n := 0
	for _, c := range []byte(head[colon+1:]) {
		if c < '0' || c > '9' || n > 1<<30 {
			return "", 0, "", false
		}
		n = n*10 + int(c-'0')
	}
	if i := strings.Index(rest, " pc=0x"); i >= 0 {
		pc = rest[i+len(" pc="):]
		if j := strings.IndexByte(pc, ' '); j >= 0 {
			pc = pc[:j]
		}
	}
	return head[:colon], n, pc, true
}

// goroutineHeader parses "goroutine 1 gp=0x… m=0 mp=0x… [running, 3 minutes]:".
func goroutineHeader(l string) (id int64, detailed bool, status string, ok bool) {
	rest, found := strings.CutPrefix(l, "goroutine ")
	if !found || !strings.HasSuffix(rest, "]:") {
		return 0, false, "", false
	}
	sp := strings.IndexByte(rest, ' ')
	if sp <= 0 {
		return 0, false, "", false
	}
	id, err := strconv.ParseInt(rest[:sp], 10, 64)
	if err != nil {
		return 0, false, "", false
	}
	rest = rest[sp+1:]
	open := strings.IndexByte(rest, '[')
	if open < 0 {
		return 0, false, "", false
	}
	for f := range strings.FieldsSeq(rest[:open]) {
		if !strings.HasPrefix(f, "gp=") && !strings.HasPrefix(f, "m=") && !strings.HasPrefix(f, "mp=") {
			return 0, false, "", false
		}
		detailed = true
	}
	return id, detailed, rest[open+1 : len(rest)-2], true
}

func isSignalHeader(l string) bool {
	return (strings.HasPrefix(l, "SIG") || strings.HasPrefix(l, "signal ")) && reSigHeader.MatchString(l)
}

// isFunctionLine reports whether l can be a frame's function line:
// "main.(*T).m(0x1, {0x2, 0x3})", "main.main()", "panic({0x4a…, 0x5a…})".
func isFunctionLine(l string) bool {
	if len(l) < 3 || l[len(l)-1] != ')' {
		return false
	}
	switch l[0] {
	case ' ', '\t', '{', '[', '"', '(':
		return false
	}
	open := strings.IndexByte(l, '(')
	if open <= 0 {
		return false
	}
	// A function name has no spaces before its argument list.
	if strings.ContainsAny(l[:open], " \t") {
		// Methods with pointer receivers: "main.(*T).m(" — the first '('
		// opens the receiver, and there is still no space before it.
		return false
	}
	return true
}

// SplitArgs splits a frame's function line, "main.(*T).f(0x1, {0x2,
// 0x3})", into the function and the text between its outermost argument
// parentheses ("..." for an inlined call).
func SplitArgs(l string) (fn, args string) {
	depth := 0
	for i := len(l) - 1; i >= 0; i-- {
		switch l[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				return l[:i], l[i+1 : len(l)-1]
			}
		}
	}
	return l, ""
}

// parseStatus splits "chan receive (scan), 3 minutes, locked to thread".
func parseStatus(g *corepipe.Goroutine, s string) {
	parts := strings.Split(s, ", ")
	st := parts[0]
	for _, suffix := range []string{" (durable)", " (scan)", " (leaked)"} {
		st = strings.TrimSuffix(st, suffix)
	}
	g.Status = st
	switch st {
	case "running", "runnable", "syscall", "idle", "dead", "copystack", "preempted", "waiting":
	default:
		g.WaitReason = st
	}
	for _, part := range parts[1:] {
		if m := reMinutes.FindStringSubmatch(part); m != nil {
			g.WaitMinutes, _ = strconv.ParseInt(m[1], 10, 64)
		}
	}
}

// signalName turns "signal 35" (a signal the runtime has no name for) into
// the kernel's name.
func signalName(s string) string {
	if n, ok := strings.CutPrefix(s, "signal "); ok {
		if v, err := strconv.Atoi(n); err == nil {
			return corepipe.SignalName(v)
		}
	}
	return s
}

// signalNumber is the number of a signal by its Linux name, 0 when unknown.
func signalNumber(name string) int {
	for n := 1; n < 65; n++ {
		if corepipe.SignalName(n) == name {
			return n
		}
	}
	return 0
}

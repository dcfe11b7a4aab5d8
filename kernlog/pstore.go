package kernlog

import (
	"strconv"
	"strings"
)

// PstorePart is the header the kernel writes at the top of each part of a
// log it dumps to pstore ("Panic#1 Part2"): why it dumped, how many dumps
// this boot had made, and which part this is. Part 1 is the log's newest
// end; a log read back whole is its parts from the highest down.
type PstorePart struct {
	Reason string // Panic, Oops, Emergency, Shutdown…
	Count  int
	Part   int
}

// ParsePstoreHeader reads a part header, the first line of a pstore dmesg
// record.
func ParsePstoreHeader(line string) (PstorePart, bool) {
	line = strings.TrimRight(line, "\r\n")
	reason, rest, ok := strings.Cut(line, "#")
	if !ok || reason == "" || strings.ContainsAny(reason, " \t[") {
		return PstorePart{}, false
	}
	count, part, ok := strings.Cut(rest, " Part")
	if !ok {
		return PstorePart{}, false
	}
	c, err1 := strconv.Atoi(count)
	p, err2 := strconv.Atoi(part)
	if err1 != nil || err2 != nil || c < 0 || p < 1 {
		return PstorePart{}, false
	}
	return PstorePart{Reason: reason, Count: c, Part: p}, true
}

// IsPstoreNotice reports whether line is what a pstore backend appends to
// a record rather than what the kernel logged: ramoops's ECC summary
// ("ECC: No errors detected"). Left in, it would cut a call trace that
// runs across two parts.
func IsPstoreNotice(line string) bool {
	return strings.HasPrefix(strings.TrimLeft(line, "\n"), "ECC: ")
}

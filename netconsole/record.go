// Package netconsole receives the kernel logs that nodes send over UDP with
// Linux's netconsole — plain (one datagram per line) and extended
// (numbered records, fragments, dictionaries) — keeps a bounded ring of
// each sender's recent lines, and hands over a sender's log when its
// kernel panicked.
package netconsole

import (
	"errors"
	"strconv"
	"strings"
)

// MaxRecord is the longest extended record a sender may announce
// (ncfrag=…/len): the kernel's CONSOLE_EXT_LOG_MAX is 8 KiB.
const MaxRecord = 8 << 10

// PlainChunk is where plain netconsole cuts a longer console write, with
// no marker (MAX_PRINT_CHUNK).
const PlainChunk = 1000

var errNotExtended = errors.New("not an extended netconsole header")

// Record is one extended netconsole datagram: a whole record, or one
// fragment of one.
type Record struct {
	// Release is the sender's kernel release, when it prefixes its
	// records with it (configfs release=1, Linux 6.4+).
	Release string
	// Facility and Level are the syslog priority's parts: prival is
	// facility*8+level.
	Facility, Level int
	Seq             uint64
	// Usec is microseconds since the sender booted.
	Usec uint64
	// Cont is set for the 'c' flag: a continuation printed without a
	// newline.
	Cont bool
	// FragOff and FragLen locate a fragment in its record's body
	// (ncfrag=off/len); FragLen is 0 for a whole record.
	FragOff, FragLen int
	// Body is the text, then "\n KEY=value" dictionary lines, still
	// escaped; a fragment's body is its part of that.
	Body []byte
}

// ParseExtended reads an extended header "[release,]prival,seq,usec,flags
// [,ncfrag=off/len][,other=…];body".
func ParseExtended(b []byte) (Record, error) {
	var r Record
	semi := -1
	for i := 0; i < len(b) && i < 128; i++ {
		if b[i] == ';' {
			semi = i
			break
		}
	}
	if semi < 0 {
		return r, errNotExtended
	}
	fields := strings.Split(string(b[:semi]), ",")
	if len(fields) >= 5 && strings.Contains(fields[0], ".") {
		r.Release, fields = fields[0], fields[1:]
	}
	if len(fields) < 4 {
		return r, errNotExtended
	}
	prival, err1 := strconv.ParseUint(fields[0], 10, 16)
	seq, err2 := strconv.ParseUint(fields[1], 10, 64)
	usec, err3 := strconv.ParseUint(fields[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || len(fields[3]) != 1 {
		return r, errNotExtended
	}
	r.Facility, r.Level, r.Seq, r.Usec, r.Cont = int(prival>>3), int(prival&7), seq, usec, fields[3] == "c"
	for _, f := range fields[4:] {
		v, ok := strings.CutPrefix(f, "ncfrag=")
		if !ok {
			continue // caller=T1 and what later kernels add
		}
		off, n, ok := strings.Cut(v, "/")
		o, err1 := strconv.Atoi(off)
		l, err2 := strconv.Atoi(n)
		if !ok || err1 != nil || err2 != nil || l <= 0 || l > MaxRecord || o < 0 || o >= l {
			return r, errors.New("bad ncfrag field")
		}
		r.FragOff, r.FragLen = o, l
	}
	r.Body = b[semi+1:]
	if r.FragLen > 0 && r.FragOff+len(r.Body) > r.FragLen {
		return r, errors.New("fragment past its record's end")
	}
	return r, nil
}

// SplitBody splits an extended record's body into its text and its
// dictionary ("KEY=value", userdata included), unescaping both.
func SplitBody(body []byte) (text string, dict []string) {
	s := strings.TrimSuffix(string(body), "\n")
	lines := strings.Split(s, "\n")
	text = Unescape(lines[0])
	for _, l := range lines[1:] {
		if kv, ok := strings.CutPrefix(l, " "); ok && strings.Contains(kv, "=") {
			dict = append(dict, Unescape(kv))
		}
	}
	return text, dict
}

// Unescape undoes the kernel's \xNN escapes of non-printable bytes (and of
// the backslash itself) in extended records.
func Unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if n, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// fragments reassembles one fragmented record.
type fragments struct {
	usec  uint64
	level int
	buf   []byte
	have  []bool // per byte: received
	got   int
}

func newFragments(n int) *fragments { return &fragments{buf: make([]byte, n), have: make([]bool, n)} }

// add copies a fragment in and reports whether the record is whole.
func (f *fragments) add(off int, b []byte) bool {
	for i, c := range b {
		if !f.have[off+i] {
			f.have[off+i] = true
			f.got++
		}
		f.buf[off+i] = c
	}
	return f.got == len(f.buf)
}

// partial is what arrived of the record, holes left out.
func (f *fragments) partial() []byte {
	out := make([]byte, 0, f.got)
	for i, c := range f.buf {
		if f.have[i] {
			out = append(out, c)
		}
	}
	return out
}

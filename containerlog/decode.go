// Package containerlog reads what a container wrote, the way the kubelet
// keeps it on the node: CRI log lines (containerd, CRI-O) with their
// partial-line splits, docker's json-file lines, or plain text; rotated
// files, gzipped or not. It finds a container run's files under the node's
// log roots and keeps the bounded excerpt that holds the run's last crash.
//
// Logs are written by the tenant's program: nothing in them is trusted, and
// no line, however long it claims to be, costs more than a fixed amount of
// memory.
package containerlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"time"
)

// Formats of a log.
const (
	FormatCRI  = "cri"
	FormatJSON = "json-file"
	FormatRaw  = "raw"
)

// Streams of a line.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Line is one logical line the program wrote: partial lines joined, the
// newline removed.
type Line struct {
	Stream string
	Time   time.Time
	Text   string
	// Cut is set when the line was longer than the decoder keeps.
	Cut bool
}

// MaxLine is the longest logical line a Decoder keeps; the rest of a longer
// one is dropped and the line marked Cut.
const MaxLine = 64 << 10

// maxPhysical bounds one physical line of the file: a json-file line wraps
// its text in JSON, so it may be longer than the text it carries.
const maxPhysical = 4 * MaxLine

// Decoder turns a log file's bytes into logical lines, detecting the format
// from the first line.
type Decoder struct {
	r       *bufio.Reader
	format  string
	partial []byte // a CRI or json-file line waiting for its end
	pstream string
	pcut    bool
	ready   *Line // a line ended together with another, returned next
	err     error
}

// NewDecoder decodes r; format is FormatCRI, FormatJSON, FormatRaw, or ""
// to detect it.
func NewDecoder(r io.Reader, format string) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10), format: format}
}

// Format is the format detected so far ("" before the first line).
func (d *Decoder) Format() string { return d.format }

// Next returns the next logical line; io.EOF at the end. A line still
// partial at the end of the input is returned as it is.
func (d *Decoder) Next() (Line, error) {
	if l := d.ready; l != nil {
		d.ready = nil
		return *l, nil
	}
	for {
		if d.err != nil {
			if d.partial != nil {
				l := Line{Stream: d.pstream, Text: string(d.partial), Cut: d.pcut}
				d.partial = nil
				return l, nil
			}
			return Line{}, d.err
		}
		phys, cut, err := d.physical()
		if err != nil {
			d.err = err
			if len(phys) == 0 {
				continue
			}
		}
		if d.format == "" {
			d.format = detect(phys)
		}
		if l, ok := d.decode(phys, cut); ok {
			return l, nil
		}
	}
}

// physical reads one physical line without its newline, at most maxPhysical
// bytes of it.
func (d *Decoder) physical() ([]byte, bool, error) {
	var out []byte
	cut := false
	for {
		chunk, err := d.r.ReadSlice('\n')
		if len(out)+len(chunk) <= maxPhysical {
			out = append(out, chunk...)
		} else {
			cut = true
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		out = bytes.TrimSuffix(out, []byte("\n"))
		if err != nil && (len(out) > 0 || cut) {
			return out, cut, nil
		}
		return out, cut, err
	}
}

// detect names the format of a log from one of its lines.
func detect(l []byte) string {
	if _, _, _, _, ok := parseCRI(l); ok {
		return FormatCRI
	}
	if bytes.HasPrefix(l, []byte(`{"log":`)) || bytes.HasPrefix(l, []byte(`{"stream":`)) {
		return FormatJSON
	}
	return FormatRaw
}

func (d *Decoder) decode(phys []byte, cut bool) (Line, bool) {
	switch d.format {
	case FormatCRI:
		t, stream, tag, text, ok := parseCRI(phys)
		if !ok {
			// A foreign or damaged line: keep its text, it may be part
			// of a traceback.
			return Line{Stream: Stderr, Text: string(phys), Cut: cut}, true
		}
		return d.join(t, stream, text, tag == "P", cut)
	case FormatJSON:
		var j struct {
			Log    string    `json:"log"`
			Stream string    `json:"stream"`
			Time   time.Time `json:"time"`
		}
		if cut || json.Unmarshal(phys, &j) != nil {
			return Line{Stream: Stderr, Text: string(phys), Cut: true}, true
		}
		text, complete := bytes.CutSuffix([]byte(j.Log), []byte("\n"))
		return d.join(j.Time, j.Stream, text, !complete, false)
	default:
		return Line{Stream: Stderr, Text: string(phys), Cut: cut}, true
	}
}

// join collects the pieces of a split line up to MaxLine.
func (d *Decoder) join(t time.Time, stream string, text []byte, partial, cut bool) (Line, bool) {
	var ended Line
	have := false
	if d.partial != nil && stream != d.pstream {
		// The other stream's piece interleaved: the runtime writes whole
		// lines, so the pending piece ends here.
		ended, have = Line{Stream: d.pstream, Text: string(d.partial), Cut: d.pcut}, true
		d.partial = nil
	}
	if d.partial == nil {
		d.partial, d.pcut, d.pstream = []byte{}, false, stream
	}
	d.partial = d.add(d.partial, text, cut)
	switch {
	case partial:
		return ended, have
	case have:
		l := d.flushPartial(t)
		d.ready = &l
		return ended, true
	}
	return d.flushPartial(t), true
}

func (d *Decoder) add(buf, text []byte, cut bool) []byte {
	if cut {
		d.pcut = true
	}
	room := MaxLine - len(buf)
	if len(text) > room {
		text = text[:max(room, 0)]
		d.pcut = true
	}
	return append(buf, text...)
}

func (d *Decoder) flushPartial(t time.Time) Line {
	l := Line{Stream: d.pstream, Time: t, Text: string(d.partial), Cut: d.pcut}
	d.partial, d.pcut = nil, false
	return l
}

// parseCRI splits "<RFC3339Nano> <stdout|stderr> <P|F> <text>".
func parseCRI(l []byte) (t time.Time, stream, tag string, text []byte, ok bool) {
	sp := bytes.IndexByte(l, ' ')
	if sp < 20 || sp > 40 {
		return
	}
	ts, err := time.Parse(time.RFC3339Nano, string(l[:sp]))
	if err != nil {
		return
	}
	rest := l[sp+1:]
	switch {
	case bytes.HasPrefix(rest, []byte("stdout ")):
		stream = Stdout
	case bytes.HasPrefix(rest, []byte("stderr ")):
		stream = Stderr
	default:
		return
	}
	rest = rest[len("stdout "):]
	if len(rest) < 1 || (rest[0] != 'P' && rest[0] != 'F') {
		return
	}
	tag = string(rest[0])
	rest = rest[1:]
	if len(rest) > 0 {
		if rest[0] != ' ' {
			return
		}
		rest = rest[1:]
	}
	return ts, stream, tag, rest, true
}

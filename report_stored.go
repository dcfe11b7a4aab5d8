package corepipe

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strconv"
	"strings"
)

// StoredForm is the version of the form a report is stored in (at
// ReportKey), which is not the JSON clients get: that is WriteJSON's, the
// contract of design.md.
//
// The stored form is the report's JSON with one difference, made for
// goroutine leaks, where 100 000 goroutines share a few hundred stacks: each
// distinct stack is written once. A goroutine has "stack": N, the index of
// its stack among the distinct stacks in the order they first appear, and
// the first goroutine with a stack also carries it as "frames" (absent for
// an empty stack); later ones carry only the index. A goroutine without
// "stack" has its own "frames", as in the plain JSON. The member
// "stored_form" holds this version; reports stored before it existed are
// plain JSON, which ReadStored reads too.
//
// Defining a stack where it first appears, rather than in a table ahead of
// the goroutines, lets a writer stream goroutines it does not hold, keeping
// only a hash of each distinct stack.
const StoredForm = 1

// StoredWriter writes a report in the stored form a part at a time, for a
// writer whose goroutines are not all in memory: NewStoredWriter writes the
// head, Member any member the head left out, Goroutine each goroutine in
// order, Close the end. (*Report).WriteStored is the whole of it for a
// report in memory.
type StoredWriter struct {
	bw         *bufio.Writer
	stacks     map[stackKey]int
	seeds      [2]maphash.Seed
	goroutines int
	num        []byte
	err        error
}

// stackKey identifies a stack by two independent 64-bit hashes: a
// collision would give a goroutine another's stack, and 128 bits make one
// out of reach among any number of stacks a report can hold.
type stackKey [2]uint64

// NewStoredWriter writes head, all but its goroutines (which follow through
// Goroutine), to w in the stored form.
func NewStoredWriter(w io.Writer, head *Report) (*StoredWriter, error) {
	rest := *head
	rest.Goroutines = nil
	b, err := json.Marshal(&rest)
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	sw := &StoredWriter{bw: bufio.NewWriterSize(w, 64<<10), stacks: map[stackKey]int{},
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	// The schema member is always there: what follows needs a comma.
	sw.bw.Write(b[:len(b)-1])
	fmt.Fprintf(sw.bw, `,"stored_form":%d`, StoredForm)
	return sw, nil
}

// Member writes the member name of the report, whose value value writes as
// JSON: a part of the report its writer streams rather than holds. It
// must come before the goroutines.
func (sw *StoredWriter) Member(name string, value func(io.Writer) error) error {
	if sw.err != nil {
		return sw.err
	}
	if sw.goroutines > 0 {
		return fmt.Errorf("stored report: member %s after the goroutines", name)
	}
	k, _ := json.Marshal(name)
	sw.bw.WriteByte(',')
	sw.bw.Write(k)
	sw.bw.WriteByte(':')
	if err := value(sw.bw); err != nil {
		sw.err = err
	}
	return sw.err
}

// storedGoroutine is a goroutine as stored: its Frames shadow the
// embedded ones, absent where Stack names a stack defined before.
type storedGoroutine struct {
	Goroutine
	Stack  *int    `json:"stack,omitempty"`
	Frames []Frame `json:"frames,omitempty"`
}

// Goroutine writes the next goroutine.
func (sw *StoredWriter) Goroutine(g *Goroutine) error {
	if sw.err != nil {
		return sw.err
	}
	b, err := json.Marshal(g)
	if err != nil {
		sw.err = fmt.Errorf("encode goroutine %d: %w", g.ID, err)
		return sw.err
	}
	return sw.GoroutineJSON(b)
}

// GoroutineJSON writes the next goroutine from its JSON object, for a
// writer that has it as JSON: it is not decoded unless its members are
// written in some way json.Marshal would not write them. obj need only be
// valid JSON during the call.
func (sw *StoredWriter) GoroutineJSON(obj []byte) error {
	if sw.err != nil {
		return sw.err
	}
	frames, ok := framesMember(obj)
	if !ok {
		// Decoded and encoded again, the goroutine is as json.Marshal
		// writes it, which framesMember reads.
		var g Goroutine
		if err := json.Unmarshal(obj, &g); err != nil {
			sw.err = fmt.Errorf("%w: stored report: goroutine: %v", ErrInvalid, err)
			return sw.err
		}
		b, err := json.Marshal(&g)
		if err != nil {
			sw.err = fmt.Errorf("encode goroutine %d: %w", g.ID, err)
			return sw.err
		}
		if frames, ok = framesMember(b); !ok {
			sw.err = fmt.Errorf("encode goroutine %d: its frames are not where they belong", g.ID)
			return sw.err
		}
		obj = b
	}
	if sw.goroutines == 0 {
		sw.bw.WriteString(`,"goroutines":[`)
	} else {
		sw.bw.WriteByte(',')
	}
	sw.goroutines++
	value := obj[frames.value[0]:frames.value[1]]
	// A goroutine without frames (null, not empty) keeps no stack, so
	// that it reads back as it was.
	if string(value) == "null" {
		sw.bw.Write(obj)
		return nil
	}
	k := sw.key(value)
	n, seen := sw.stacks[k]
	if !seen {
		n = len(sw.stacks)
		sw.stacks[k] = n
	}
	sw.bw.Write(obj[:frames.key[0]])
	sw.num = strconv.AppendInt(append(sw.num[:0], `"stack":`...), int64(n), 10)
	sw.bw.Write(sw.num)
	if !seen && string(value) != "[]" {
		sw.bw.WriteString(`,"frames":`)
		sw.bw.Write(value)
	}
	sw.bw.Write(obj[frames.value[1]:])
	return nil
}

func (sw *StoredWriter) key(frames []byte) stackKey {
	return stackKey{maphash.Bytes(sw.seeds[0], frames), maphash.Bytes(sw.seeds[1], frames)}
}

// member is where a member of a JSON object is: its key, quotes included,
// and its value.
type member struct{ key, value [2]int }

// framesMember finds the frames of a goroutine's JSON object as
// json.Marshal writes it: ok is false when the object has no frames, or
// has members a decoder would read differently from what is seen here (a
// key with escapes, frames or stack under two names or in other case).
func framesMember(obj []byte) (m member, ok bool) {
	found := false
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return m, false
	}
	i = skipSpace(obj, i+1)
	for i < len(obj) && obj[i] != '}' {
		var cur member
		cur.key[0] = i
		i = endOfString(obj, i)
		if i < 0 {
			return m, false
		}
		cur.key[1] = i
		key := obj[cur.key[0]+1 : cur.key[1]-1]
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] != ':' {
			return m, false
		}
		cur.value[0] = skipSpace(obj, i+1)
		i = endOfValue(obj, cur.value[0])
		if i < 0 {
			return m, false
		}
		cur.value[1] = i
		switch {
		case bytes.IndexByte(key, '\\') >= 0:
			return m, false
		case string(key) == "frames" && !found:
			m, found = cur, true
		case strings.EqualFold(string(key), "frames") || strings.EqualFold(string(key), "stack"):
			return m, false
		}
		i = skipSpace(obj, i)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return m, found
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// endOfString returns where the JSON string at b[i] ends, after its
// closing quote; -1 if it does not.
func endOfString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// endOfValue returns where the JSON value at b[i] ends; -1 if it does not.
func endOfValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			if i = endOfString(b, i); i < 0 {
				return -1
			}
			if depth == 0 {
				return i
			}
			continue
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return i
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return i
		}
		i++
	}
	if depth == 0 {
		return i
	}
	return -1
}

// Close ends the report and flushes it.
func (sw *StoredWriter) Close() error {
	if sw.err != nil {
		return sw.err
	}
	if sw.goroutines > 0 {
		sw.bw.WriteByte(']')
	}
	sw.bw.WriteString("}\n")
	return sw.bw.Flush()
}

// WriteStored writes r in the stored form (see StoredForm) one goroutine at
// a time.
func (r *Report) WriteStored(w io.Writer) error {
	sw, err := NewStoredWriter(w, r)
	if err != nil {
		return err
	}
	for i := range r.Goroutines {
		if err := sw.Goroutine(&r.Goroutines[i]); err != nil {
			return err
		}
	}
	return sw.Close()
}

// ReadStored reads a stored report, in the stored form or the plain JSON
// reports were stored in before it. Goroutines with one stack share one
// slice of frames, which readers must not change. An error wraps ErrInvalid
// when the bytes are not a stored report, as opposed to failing to read
// them.
func ReadStored(src io.Reader) (*Report, error) {
	var gs []Goroutine
	r, err := ReadStoredEach(src, func(_ *Report, g Goroutine) error {
		gs = append(gs, g)
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.Goroutines = gs
	return r, nil
}

// ReadStoredEach reads a stored report as ReadStored does, but hands each
// goroutine to each, in order, instead of keeping it: a reader that shows
// or serves part of the goroutines holds only that part, and the distinct
// stacks. head is what has been read of the report before its goroutines
// (all of it, as reports are written). The report returned has no
// goroutines; an error from each ends the read and is returned as it is.
func ReadStoredEach(src io.Reader, each func(head *Report, g Goroutine) error) (*Report, error) {
	dec := json.NewDecoder(src)
	var (
		r       Report
		head    = []byte{'{'}
		members int
		stacks  [][]Frame
		form    int
		seen    bool
	)
	// flush decodes the members read so far into r, whose other fields
	// it leaves as they are.
	flush := func() error {
		if members == 0 {
			return nil
		}
		if err := json.Unmarshal(append(head, '}'), &r); err != nil {
			return fmt.Errorf("%w: stored report: %v", ErrInvalid, err)
		}
		head, members = head[:1], 0
		return nil
	}
	if err := delim(dec, '{'); err != nil {
		return nil, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, storedInvalid(err)
		}
		key, _ := tok.(string)
		switch {
		// encoding/json matches member names regardless of case: so
		// must this, or a report could say two things at once.
		case strings.EqualFold(key, "goroutines"):
			if seen {
				return nil, fmt.Errorf("%w: stored report has two goroutine lists", ErrInvalid)
			}
			seen = true
			if err := flush(); err != nil {
				return nil, err
			}
			if stacks, err = readGoroutines(dec, &r, stacks, each); err != nil {
				return nil, err
			}
		case key == "stored_form":
			if err := dec.Decode(&form); err != nil {
				return nil, storedInvalid(err)
			}
			if form < 0 || form > StoredForm {
				return nil, fmt.Errorf("%w: stored report is in form %d, newer than this build reads (%d)", ErrInvalid, form, StoredForm)
			}
		default:
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return nil, storedInvalid(err)
			}
			if members > 0 {
				head = append(head, ',')
			}
			k, _ := json.Marshal(key)
			head = append(append(append(head, k...), ':'), v...)
			members++
		}
	}
	if err := delim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return nil, fmt.Errorf("%w: stored report has more after its end", ErrInvalid)
		}
		return nil, storedInvalid(err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return &r, nil
}

// readGoroutines reads the goroutine array that dec is at, resolving each
// goroutine's stack against stacks and adding the ones defined.
func readGoroutines(dec *json.Decoder, head *Report, stacks [][]Frame, each func(*Report, Goroutine) error) ([][]Frame, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, storedInvalid(err)
	}
	if tok == nil {
		return stacks, nil
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("%w: stored report has goroutines %v, not a list", ErrInvalid, tok)
	}
	for i := 0; dec.More(); i++ {
		var s storedGoroutine
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("goroutine %d: %w", i, storedInvalid(err))
		}
		g := s.Goroutine
		g.Frames = s.Frames
		if s.Stack != nil {
			n := *s.Stack
			switch {
			case n == len(stacks):
				if g.Frames == nil {
					g.Frames = []Frame{}
				}
				stacks = append(stacks, g.Frames)
			case n < 0 || n > len(stacks):
				return nil, fmt.Errorf("%w: goroutine %d names stack %d of %d defined", ErrInvalid, g.ID, n, len(stacks))
			case s.Frames != nil:
				return nil, fmt.Errorf("%w: goroutine %d defines stack %d again", ErrInvalid, g.ID, n)
			}
			// A capped slice: appending to one goroutine's frames must
			// not write into the others'.
			f := stacks[n]
			g.Frames = f[:len(f):len(f)]
		}
		if err := each(head, g); err != nil {
			return nil, err
		}
	}
	return stacks, delim(dec, ']')
}

func delim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return storedInvalid(err)
	}
	if tok != want {
		return fmt.Errorf("%w: stored report has %v where %v belongs", ErrInvalid, tok, want)
	}
	return nil
}

// storedInvalid says that err, from decoding, is in the bytes (ErrInvalid)
// unless reading them failed: a json.Decoder passes its reader's errors on
// as they are, and makes its own of every other kind.
func storedInvalid(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	if errors.As(err, &syntax) || errors.As(err, &typ) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: stored report: %v", ErrInvalid, err)
	}
	return fmt.Errorf("read stored report: %w", err)
}

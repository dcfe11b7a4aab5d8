package analyzer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/corepipe/corepipe"
)

// Bounds on what the parent holds of a report the child wrote. A report of
// 100 000 goroutines is about 130 MB of JSON, nearly all of it goroutines
// and the groups that list their IDs, which are copied from the file to the
// store one element at a time without being kept; the rest (threads,
// diagnosis) is decoded and must fit maxHead. A goroutine's frames are
// capped at 1000, a few hundred KiB of JSON; a group lists the IDs of its
// goroutines, which the report's own limit (DefaultMaxReport) keeps well
// under maxHead.
const (
	maxHead      = 32 << 20
	maxGoroutine = 8 << 20
)

// streamed are the members of a report that grow with its goroutines,
// in the order they are stored (the goroutines last, as WriteJSON has
// them), and the largest element each may have.
var (
	streamed      = [...]string{"goroutine_groups", "goroutines"}
	streamedLimit = [...]int{maxHead, maxGoroutine}
	streamedShape = [...]*shape{shapeOf(reflect.TypeFor[corepipe.GoroutineGroup]()), shapeOf(reflect.TypeFor[corepipe.Goroutine]())}
)

// reportFile is what grows with the goroutines in a report file the
// inspector wrote: validated where it lies, streamed into the store from
// there.
type reportFile struct {
	f        file
	sections [len(streamed)]section
}

// file is what is read of a report file.
type file interface {
	io.ReaderAt
	io.Closer
}

// section is an array of objects in the file.
type section struct {
	start, end int64 // its elements, between its brackets
	n          int
}

// Close releases the file; the scratch directory it was in may already be
// gone.
func (rf *reportFile) Close() error {
	if rf == nil {
		return nil
	}
	return rf.f.Close()
}

// readReport decodes every field of the report in f except its goroutines
// and their groups; of the goroutines it keeps only the crashing one (the
// first, by the report's contract) for the summary. Memory stays within
// maxHead plus one goroutine whatever the file holds.
func readReport(f file) (*corepipe.Report, *reportFile, error) {
	s := newScanner(io.NewSectionReader(f, 0, 1<<62))
	if err := s.expect('{'); err != nil {
		return nil, nil, err
	}
	rf := &reportFile{f: f}
	head := append(make([]byte, 0, 4<<10), '{')
	var first []byte
	var seen [len(streamed)]bool
	for members := 0; ; members++ {
		b, err := s.more()
		if err != nil {
			return nil, nil, err
		}
		if b == '}' {
			s.skip()
			break
		}
		if members > 0 {
			if err := s.expect(','); err != nil {
				return nil, nil, err
			}
		}
		key, err := s.value(4 << 10)
		if err != nil {
			return nil, nil, err
		}
		var name string
		if key[0] != '"' || json.Unmarshal(key, &name) != nil {
			return nil, nil, invalidf("report JSON has a member named %.40s", key)
		}
		if err := s.expect(':'); err != nil {
			return nil, nil, err
		}
		// encoding/json matches names without regard to case: so must this.
		if i := slices.IndexFunc(streamed[:], func(m string) bool { return strings.EqualFold(name, m) }); i >= 0 {
			if seen[i] {
				return nil, nil, invalidf("report JSON has two %s lists", streamed[i])
			}
			seen[i] = true
			keep := &first
			if streamed[i] != "goroutines" {
				keep = nil
			}
			if err := rf.sections[i].scan(s, i, keep); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", streamed[i], err)
			}
			continue
		}
		// key is s's buffer, which the value is read into next.
		if len(head) > 1 {
			head = append(head, ',')
		}
		head = append(append(head, key...), ':')
		v, err := s.value(maxHead - len(head))
		if err != nil {
			return nil, nil, err
		}
		head = append(head, v...)
	}
	if b, err := s.peek(); err != io.EOF {
		return nil, nil, invalidf("report JSON has %q after its end", b)
	}
	var r corepipe.Report
	if err := json.Unmarshal(append(head, '}'), &r); err != nil {
		return nil, nil, invalidf("report JSON: %v", err)
	}
	if first != nil {
		var g corepipe.Goroutine
		if err := json.Unmarshal(first, &g); err != nil {
			return nil, nil, invalidf("goroutine 0: %v", err)
		}
		if g.ID == r.CrashingGoroutine && g.ID != 0 {
			r.Goroutines = []corepipe.Goroutine{g}
		}
	}
	return &r, rf, nil
}

// scan validates the array at s, of streamed[i]'s elements, and records
// where they lie; with first, it keeps a copy of the first one there.
func (sec *section) scan(s *scanner, i int, first *[]byte) error {
	if err := s.expect('['); err != nil {
		return err
	}
	sec.start = s.off
	err := eachElement(s, i, func(elem []byte) error {
		if sec.n == 0 && first != nil {
			*first = bytes.Clone(elem)
		}
		sec.n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("element %d: %w", sec.n, err)
	}
	sec.end = s.off - 1
	return nil
}

// each calls fn with each of the section's elements from f, validated
// again as they are read: the file is the child's, and it is read a second
// time. elem is only valid during the call.
func (sec *section) each(f io.ReaderAt, i int, fn func(elem []byte) error) error {
	s := newScanner(io.NewSectionReader(f, sec.start, sec.end-sec.start+1))
	n := 0
	err := eachElement(s, i, func(elem []byte) error {
		n++
		return fn(elem)
	})
	if err == nil && n != sec.n {
		err = invalidf("report file changed while it was stored")
	}
	return err
}

// write writes the section's elements from f as a JSON array.
func (sec *section) write(w io.Writer, f io.ReaderAt, i int) error {
	n := 0
	// The child indents its report for people; the store keeps it
	// compact, a third smaller.
	compact := bytes.NewBufferString("[")
	err := sec.each(f, i, func(elem []byte) error {
		if n > 0 {
			compact.Write(comma)
		}
		n++
		if err := json.Compact(compact, elem); err != nil {
			return invalidf("%v", err)
		}
		if compact.Len() < 32<<10 {
			return nil
		}
		_, err := w.Write(compact.Bytes())
		compact.Reset()
		return err
	})
	if err == nil {
		compact.WriteByte(']')
		_, err = w.Write(compact.Bytes())
	}
	return err
}

// eachElement calls fn with each element of the array of streamed[sec]
// whose '[' s has just read, each a JSON object that decodes into its
// type, and consumes the closing ']'. elem is only valid during the call.
func eachElement(s *scanner, sec int, fn func(elem []byte) error) error {
	for i := 0; ; i++ {
		b, err := s.more()
		if err != nil {
			return err
		}
		if b == ']' {
			s.skip()
			return nil
		}
		if i > 0 {
			if err := s.expect(','); err != nil {
				return err
			}
		}
		elem, err := s.value(streamedLimit[sec])
		if err != nil {
			return err
		}
		if elem[0] != '{' {
			return invalidf("an element is %.20s, not an object", elem)
		}
		if err := streamedShape[sec].validate(elem); err != nil {
			return invalidf("%v", err)
		}
		if err := fn(elem); err != nil {
			return err
		}
	}
}

// writeReport writes r in the stored form (corepipe.StoredForm); with rf,
// its goroutines and their groups are rf's rather than r's own (which then
// hold only the crashing goroutine). Both are copied from the file one
// element at a time, compacted, without being decoded.
func writeReport(w io.Writer, r *corepipe.Report, rf *reportFile) error {
	if rf == nil {
		return r.WriteStored(w)
	}
	rest := *r
	rest.Goroutines, rest.GoroutineGroups = nil, nil
	sw, err := corepipe.NewStoredWriter(w, &rest)
	if err != nil {
		return err
	}
	for i := range rf.sections {
		sec := &rf.sections[i]
		if sec.n == 0 {
			continue
		}
		if streamed[i] != "goroutines" {
			err = sw.Member(streamed[i], func(w io.Writer) error { return sec.write(w, rf.f, i) })
		} else {
			var compact bytes.Buffer
			err = sec.each(rf.f, i, func(elem []byte) error {
				compact.Reset()
				if err := json.Compact(&compact, elem); err != nil {
					return invalidf("%v", err)
				}
				return sw.GoroutineJSON(compact.Bytes())
			})
		}
		if err != nil {
			return err
		}
	}
	return sw.Close()
}

var (
	errSyntax = errors.New("report JSON is malformed")
	comma     = []byte{','}
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{corepipe.ErrInvalid}, args...)...)
}

// scanner cuts JSON values out of a stream without decoding them, holding
// one value at a time.
type scanner struct {
	br  *bufio.Reader
	off int64 // bytes consumed
	buf []byte
}

func newScanner(r io.Reader) *scanner {
	return &scanner{br: bufio.NewReaderSize(r, 64<<10)}
}

// peek returns the next byte that is not white space, without consuming it.
func (s *scanner) peek() (byte, error) {
	for {
		b, err := s.br.ReadByte()
		if err != nil {
			return 0, err
		}
		if b != ' ' && b != '\t' && b != '\n' && b != '\r' {
			s.br.UnreadByte()
			return b, nil
		}
		s.off++
	}
}

// more is peek where the value is not yet complete.
func (s *scanner) more() (byte, error) {
	b, err := s.peek()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errSyntax, err)
	}
	return b, nil
}

func (s *scanner) skip() {
	s.br.ReadByte()
	s.off++
}

func (s *scanner) expect(want byte) error {
	b, err := s.more()
	if err != nil {
		return err
	}
	if b != want {
		return invalidf("report JSON has %q at byte %d where %q belongs", b, s.off, want)
	}
	s.skip()
	return nil
}

// value reads the next JSON value, of at most limit bytes, and returns it
// once json.Valid agrees it is one.
func (s *scanner) value(limit int) ([]byte, error) {
	b, err := s.more()
	if err != nil {
		return nil, err
	}
	// A number or literal ends at the first byte not part of it; the
	// other values end at their closing byte.
	literal := b != '{' && b != '[' && b != '"'
	s.buf = s.buf[:0]
	depth, inString, escaped := 0, false, false
	for done := false; !done; {
		// Work through what is buffered a chunk at a time rather than
		// byte by byte: the goroutines are most of a large report.
		chunk, err := s.br.Peek(max(1, s.br.Buffered()))
		if len(chunk) == 0 {
			if err == io.EOF && literal && len(s.buf) > 0 {
				break
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("%w: %w", errSyntax, err)
		}
		n := 0
		for n < len(chunk) && !done {
			c := chunk[n]
			if literal {
				if c == ',' || c == '}' || c == ']' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
					done = true
				} else {
					n++
				}
				continue
			}
			if inString && !escaped && c != '"' && c != '\\' {
				// Most of a report is strings: skip to the next quote or
				// backslash at the speed of IndexByte.
				rest := chunk[n:]
				j := bytes.IndexByte(rest, '"')
				if j < 0 {
					j = len(rest)
				}
				if k := bytes.IndexByte(rest[:j], '\\'); k >= 0 {
					j = k
				}
				n += j
				continue
			}
			n++
			switch {
			case inString:
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
				}
			case c == '"':
				inString = true
			case c == '{' || c == '[':
				depth++
			case c == '}' || c == ']':
				depth--
			}
			done = depth == 0 && !inString
		}
		if len(s.buf)+n > limit {
			return nil, invalidf("a value in the report is over %d bytes", limit)
		}
		s.buf = append(s.buf, chunk[:n]...)
		s.br.Discard(n)
		s.off += int64(n)
	}
	if !json.Valid(s.buf) {
		return nil, invalidf("report JSON is malformed at byte %d", s.off-int64(len(s.buf)))
	}
	return s.buf, nil
}

package corepipe

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes r as JSON one goroutine at a time: json.Marshal of a
// report with 100 000 goroutines holds well over 100 MiB of text, twice
// when indented. The goroutines come last in the object; everything else is
// as json.Marshal writes it. indent makes it readable by people.
func (r *Report) WriteJSON(w io.Writer, indent bool) error {
	if len(r.Goroutines) == 0 {
		b, err := marshal(r, "", indent)
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	jw, err := NewJSONWriter(w, r, indent)
	if err != nil {
		return err
	}
	for i := range r.Goroutines {
		if err := jw.Goroutine(&r.Goroutines[i]); err != nil {
			return err
		}
	}
	return jw.Close(nil)
}

// JSONWriter writes a report as WriteJSON does, for a writer that has its
// goroutines one at a time (a stored report read with ReadStoredEach):
// NewJSONWriter writes the head, Goroutine each goroutine, Close the end.
type JSONWriter struct {
	bw         *bufio.Writer
	indent     bool
	sep, end   string
	written    map[string]bool
	goroutines int
	sh         sharedStacks
}

// NewJSONWriter writes head, all but its goroutines (at least one of which
// must follow).
func NewJSONWriter(w io.Writer, head *Report, indent bool) (*JSONWriter, error) {
	rest := *head
	rest.Goroutines = nil
	b, err := marshal(&rest, "", indent)
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	jw := &JSONWriter{bw: bufio.NewWriterSize(w, 64<<10), indent: indent, written: map[string]bool{}, sh: newSharedStacks(indent)}
	if err := eachMember(b, func(key string, _ json.RawMessage) { jw.written[key] = true }); err != nil {
		return nil, err
	}
	// b ends with the object's closing brace (and, indented, the
	// newline before it): the goroutines go in its place. The schema
	// field is always there, so a comma is always needed.
	b = bytes.TrimRight(b[:len(b)-1], "\n")
	open := `,"goroutines":[`
	jw.sep, jw.end = ",", "]"
	if indent {
		open, jw.sep, jw.end = ",\n  \"goroutines\": [\n    ", ",\n    ", "\n  ]"
	}
	jw.bw.Write(b)
	jw.bw.WriteString(open)
	return jw, nil
}

// Goroutine writes the next goroutine.
func (jw *JSONWriter) Goroutine(g *Goroutine) error {
	if jw.goroutines > 0 {
		jw.bw.WriteString(jw.sep)
	}
	jw.goroutines++
	frames, err := jw.sh.encoded(g.Frames)
	if err != nil {
		return fmt.Errorf("encode goroutine %d: %w", g.ID, err)
	}
	if frames == nil {
		b, err := marshal(g, "    ", jw.indent)
		if err != nil {
			return fmt.Errorf("encode goroutine %d: %w", g.ID, err)
		}
		jw.bw.Write(b)
		return nil
	}
	// The goroutine without its frames, which are spliced in where its
	// null is: the last "frames" member, as only frames_elided, a number,
	// comes after it.
	rest := *g
	rest.Frames = nil
	b, err := marshal(&rest, "    ", jw.indent)
	if err != nil {
		return fmt.Errorf("encode goroutine %d: %w", g.ID, err)
	}
	at := bytes.LastIndex(b, jw.sh.null)
	if at < 0 {
		return fmt.Errorf("encode goroutine %d: no frames member", g.ID)
	}
	at += len(jw.sh.null) - len("null")
	jw.bw.Write(b[:at])
	jw.bw.Write(frames)
	jw.bw.Write(b[at+len("null"):])
	return nil
}

// Close ends the report and flushes it. With tail, the members of tail
// that the head lacked follow the goroutines: a stored report may have
// members after its goroutines, which its reader learns only at the end.
func (jw *JSONWriter) Close(tail *Report) error {
	jw.bw.WriteString(jw.end)
	if tail != nil {
		rest := *tail
		rest.Goroutines = nil
		b, err := marshal(&rest, "", jw.indent)
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		err = eachMember(b, func(key string, v json.RawMessage) {
			if jw.written[key] {
				return
			}
			k, _ := json.Marshal(key)
			if jw.indent {
				jw.bw.WriteString(",\n  ")
				jw.bw.Write(k)
				jw.bw.WriteString(": ")
			} else {
				jw.bw.WriteByte(',')
				jw.bw.Write(k)
				jw.bw.WriteByte(':')
			}
			jw.bw.Write(v)
		})
		if err != nil {
			return err
		}
	}
	if jw.indent {
		jw.bw.WriteByte('\n')
	}
	jw.bw.WriteString("}\n")
	return jw.bw.Flush()
}

// eachMember calls fn with each member of the JSON object obj, in order.
func eachMember(obj []byte, fn func(key string, v json.RawMessage)) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		key, _ := tok.(string)
		fn(key, v)
	}
	return nil
}

// sharedStacks encodes once the frames that goroutines share, one slice
// for many, as ReadStored gives them: a leak's 100 000 goroutines have a
// few hundred stacks, which would otherwise be encoded 100 000 times. A
// slice's frames are kept encoded from the second goroutine that has it.
type sharedStacks struct {
	indent bool
	null   []byte
	seen   map[stackRef]bool
	enc    map[stackRef][]byte
}

// maxSeenStacks bounds the slices of frames sharedStacks watches for a
// second goroutine: far more than the distinct stacks of a leak.
const maxSeenStacks = 1 << 12

// stackRef is a slice of frames by identity: where it starts and how long.
type stackRef struct {
	start *Frame
	n     int
}

func newSharedStacks(indent bool) sharedStacks {
	sh := sharedStacks{indent: indent, null: []byte(`"frames":null`), seen: map[stackRef]bool{}, enc: map[stackRef][]byte{}}
	if indent {
		sh.null = []byte(`"frames": null`)
	}
	return sh
}

// encoded returns the JSON of frames once they are shared, nil before.
func (sh *sharedStacks) encoded(frames []Frame) ([]byte, error) {
	if len(frames) == 0 {
		return nil, nil
	}
	p := stackRef{&frames[0], len(frames)}
	if b, ok := sh.enc[p]; ok {
		return b, nil
	}
	if !sh.seen[p] {
		// What is seen is kept alive: only so many slices are, for a
		// report whose goroutines share none.
		if len(sh.seen) < maxSeenStacks {
			sh.seen[p] = true
		}
		return nil, nil
	}
	// Frames sit two levels into the goroutine list: their array is
	// indented as the goroutine's members are.
	b, err := marshal(frames, "      ", sh.indent)
	if err != nil {
		return nil, err
	}
	sh.enc[p] = b
	return b, nil
}

func marshal(v any, prefix string, indent bool) ([]byte, error) {
	if indent {
		return json.MarshalIndent(v, prefix, "  ")
	}
	return json.Marshal(v)
}

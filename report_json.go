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
	bw := bufio.NewWriterSize(w, 64<<10)
	rest := *r
	rest.Goroutines = nil
	head, err := marshal(&rest, "", indent)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if len(r.Goroutines) == 0 {
		bw.Write(head)
		bw.WriteByte('\n')
		return bw.Flush()
	}
	// head ends with the object's closing brace (and, indented, the
	// newline before it): the goroutines go in its place. The schema
	// field is always there, so a comma is always needed.
	head = bytes.TrimRight(head[:len(head)-1], "\n")
	open, sep, end := `,"goroutines":[`, ",", "]}\n"
	if indent {
		open, sep, end = ",\n  \"goroutines\": [\n    ", ",\n    ", "\n  ]\n}\n"
	}
	bw.Write(head)
	bw.WriteString(open)
	sh := newSharedStacks(r.Goroutines, indent)
	for i := range r.Goroutines {
		if i > 0 {
			bw.WriteString(sep)
		}
		g := &r.Goroutines[i]
		frames, err := sh.encoded(g.Frames)
		if err != nil {
			return fmt.Errorf("encode goroutine %d: %w", g.ID, err)
		}
		if frames == nil {
			b, err := marshal(g, "    ", indent)
			if err != nil {
				return fmt.Errorf("encode goroutine %d: %w", g.ID, err)
			}
			bw.Write(b)
			continue
		}
		// The goroutine without its frames, which are spliced in where
		// its null is: the last "frames" member, as only frames_elided, a
		// number, comes after it.
		rest := *g
		rest.Frames = nil
		b, err := marshal(&rest, "    ", indent)
		if err != nil {
			return fmt.Errorf("encode goroutine %d: %w", g.ID, err)
		}
		null := sh.null
		at := bytes.LastIndex(b, null)
		if at < 0 {
			return fmt.Errorf("encode goroutine %d: no frames member", g.ID)
		}
		at += len(null) - len("null")
		bw.Write(b[:at])
		bw.Write(frames)
		bw.Write(b[at+len("null"):])
	}
	bw.WriteString(end)
	return bw.Flush()
}

// sharedStacks encodes once the frames that goroutines share, one slice
// for many, as ReadStored gives them: a leak's 100 000 goroutines have a
// few hundred stacks, which would otherwise be encoded 100 000 times.
type sharedStacks struct {
	indent bool
	null   []byte
	shared map[stackRef]bool
	enc    map[stackRef][]byte
}

// stackRef is a slice of frames by identity: where it starts and how long.
type stackRef struct {
	start *Frame
	n     int
}

func newSharedStacks(gs []Goroutine, indent bool) *sharedStacks {
	sh := &sharedStacks{indent: indent, null: []byte(`"frames":null`), shared: map[stackRef]bool{}, enc: map[stackRef][]byte{}}
	if indent {
		sh.null = []byte(`"frames": null`)
	}
	for i := range gs {
		if f := gs[i].Frames; len(f) > 0 {
			ref := stackRef{&f[0], len(f)}
			_, seen := sh.shared[ref]
			sh.shared[ref] = seen
		}
	}
	return sh
}

// encoded returns the JSON of frames when they are shared, nil when not.
func (sh *sharedStacks) encoded(frames []Frame) ([]byte, error) {
	if len(frames) == 0 {
		return nil, nil
	}
	p := stackRef{&frames[0], len(frames)}
	if !sh.shared[p] {
		return nil, nil
	}
	if b, ok := sh.enc[p]; ok {
		return b, nil
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

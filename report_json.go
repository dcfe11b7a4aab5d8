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
	for i := range r.Goroutines {
		if i > 0 {
			bw.WriteString(sep)
		}
		b, err := marshal(&r.Goroutines[i], "    ", indent)
		if err != nil {
			return fmt.Errorf("encode goroutine %d: %w", r.Goroutines[i].ID, err)
		}
		bw.Write(b)
	}
	bw.WriteString(end)
	return bw.Flush()
}

func marshal(v any, prefix string, indent bool) ([]byte, error) {
	if indent {
		return json.MarshalIndent(v, prefix, "  ")
	}
	return json.Marshal(v)
}

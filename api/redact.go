package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/corepipe/corepipe"
)

// redactStream copies a stored report from src to dst with its process
// scrubbed by corepipe.RedactArgs. The big parts of a report are its
// top-level arrays (goroutines, threads): they are copied element by
// element, so a report of 100 000 goroutines costs the memory of one
// goroutine, not of the report. The small objects go token by token.
func redactStream(dst io.Writer, src io.Reader) error {
	dec := json.NewDecoder(src)
	dec.UseNumber()
	bw := bufio.NewWriterSize(dst, 32<<10)
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("report: not a JSON object")
	}
	bw.WriteByte('{')
	for n := 0; dec.More(); n++ {
		key, err := dec.Token()
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if n > 0 {
			bw.WriteByte(',')
		}
		writeToken(bw, key)
		bw.WriteByte(':')
		if key == "process" {
			var p corepipe.Process
			if err := dec.Decode(&p); err != nil {
				return fmt.Errorf("report: process: %w", err)
			}
			b, err := json.Marshal(p.Redacted())
			if err != nil {
				return err
			}
			bw.Write(b)
			continue
		}
		if err := copyTopValue(bw, dec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	bw.WriteByte('}')
	return bw.Flush()
}

// copyTopValue copies a top-level value: an array one raw element at a
// time, which is much faster than token by token.
func copyTopValue(bw *bufio.Writer, dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if tok != json.Delim('[') {
		return copyFrom(bw, dec, tok)
	}
	bw.WriteByte('[')
	var raw json.RawMessage
	for n := 0; dec.More(); n++ {
		if n > 0 {
			bw.WriteByte(',')
		}
		raw = raw[:0]
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		bw.Write(raw)
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	bw.WriteByte(']')
	return nil
}

// copyValue copies the next JSON value of dec, however deeply nested.
func copyValue(bw *bufio.Writer, dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return copyFrom(bw, dec, tok)
}

// copyFrom copies the value that starts with tok.
func copyFrom(bw *bufio.Writer, dec *json.Decoder, tok json.Token) error {
	open, ok := tok.(json.Delim)
	if !ok {
		return writeToken(bw, tok)
	}
	bw.WriteByte(byte(open))
	for n := 0; dec.More(); n++ {
		if n > 0 {
			bw.WriteByte(',')
		}
		if open == '{' {
			key, err := dec.Token()
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			writeToken(bw, key)
			bw.WriteByte(':')
		}
		if err := copyValue(bw, dec); err != nil {
			return err
		}
	}
	end, err := dec.Token()
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	bw.WriteByte(byte(end.(json.Delim)))
	return nil
}

func writeToken(bw *bufio.Writer, tok json.Token) error {
	switch v := tok.(type) {
	case json.Number:
		bw.WriteString(string(v))
		return nil
	case nil:
		bw.WriteString("null")
		return nil
	}
	b, err := json.Marshal(tok)
	if err != nil {
		return err
	}
	bw.Write(b)
	return nil
}

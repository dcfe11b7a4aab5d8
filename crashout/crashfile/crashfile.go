// Package crashfile is the format of the files package crashout writes and
// corepipe's agent collects: one header line that says who wrote it, then
// whatever the Go runtime writes there when the program crashes. Standard
// library only, like crashout, so that services importing crashout pull in
// nothing else.
package crashfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Suffix ends every crash file's name.
const Suffix = ".crash"

// magic starts the header line; the version follows it.
const magic = "# corepipe-crashout/1 "

// MaxHeader bounds the header line.
const MaxHeader = 8 << 10

// Header is what the writing process says of itself. Nothing in it is
// verified: the reader records it as the process's own claim.
type Header struct {
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	Exe       string    `json:"exe,omitempty"`
	Hostname  string    `json:"hostname,omitempty"`
	// From the downward API, when the pod sets them: POD_NAME,
	// POD_NAMESPACE, POD_UID, NODE_NAME, CONTAINER_NAME.
	Pod       string `json:"pod,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	PodUID    string `json:"pod_uid,omitempty"`
	Node      string `json:"node,omitempty"`
	Container string `json:"container,omitempty"`
	// Build information from runtime/debug.ReadBuildInfo.
	GoVersion   string `json:"go_version,omitempty"`
	MainModule  string `json:"main_module,omitempty"`
	MainVersion string `json:"main_version,omitempty"`
	VCSRevision string `json:"vcs_revision,omitempty"`
	GOARCH      string `json:"goarch,omitempty"`
}

// Write writes h as the header line.
func Write(w io.Writer, h Header) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if len(magic)+len(b)+1 > MaxHeader {
		return errors.New("crash file header too long")
	}
	_, err = fmt.Fprintf(w, "%s%s\n", magic, b)
	return err
}

// ErrNotCrashFile is returned for a file that does not start with a header.
var ErrNotCrashFile = errors.New("not a corepipe crash file")

// Read reads the header line from r, at most MaxHeader bytes of it.
func Read(r *bufio.Reader) (Header, error) {
	var h Header
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) || errors.Is(err, io.EOF) {
			return h, ErrNotCrashFile
		}
		return h, err
	}
	if len(line) > MaxHeader || !bytes.HasPrefix(line, []byte(magic)) {
		return h, ErrNotCrashFile
	}
	if err := json.Unmarshal(bytes.TrimPrefix(line, []byte(magic)), &h); err != nil {
		return h, fmt.Errorf("%w: %v", ErrNotCrashFile, err)
	}
	return h, nil
}

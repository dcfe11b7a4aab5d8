package inspect

import (
	"fmt"
	"strings"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/corefile"
)

// coreFile is the core as corefile read it, with what inspect reports of it.
type coreFile struct{ *corefile.Core }

func openCore(path string) (*coreFile, error) {
	c, err := corefile.Open(path)
	if err != nil {
		return nil, err
	}
	return &coreFile{c}, nil
}

// noteTruncated says in r that it comes from a truncated core, and why it
// holds only the kernel's notes when delve could not read the core.
func (c *coreFile) noteTruncated(r *corepipe.Report, delveErr error) {
	t := c.Truncated
	r.Artifacts.Core.Truncated = true
	msg := fmt.Sprintf("The core is truncated: %d of the %d bytes its headers describe were dumped (a core size limit or a full disk). Memory past the cut is missing, so goroutines or frames may be missing too.", t.Have, t.Want)
	if delveErr != nil {
		first, _, _ := strings.Cut(delveErr.Error(), "\n")
		msg += fmt.Sprintf(" Delve could not read it (%s): only the kernel's notes — signal, threads and registers — are reported.", first)
	}
	r.Diagnosis = append(r.Diagnosis, corepipe.Diagnosis{
		Code:     "core_truncated",
		Severity: "warning",
		Message:  msg,
		Evidence: fmt.Sprintf("file size %d bytes, program headers describe %d", t.Have, t.Want),
	})
}

// notesOnly completes r from the kernel's notes alone, for a truncated core
// that delve could not analyse.
func (c *coreFile) notesOnly(r *corepipe.Report, exePath string, delveErr error) *corepipe.Report {
	c.fillNative(r, nil, exePath)
	c.noteTruncated(r, delveErr)
	return r
}

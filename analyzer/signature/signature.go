// Package signature groups crashes: it computes the signature that says two
// reports are the same bug — stable across rebuilds, line shifts and
// addresses — and buckets a report's goroutines by identical stacks.
package signature

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// Version prefixes every signature; it changes whenever the inputs or their
// normalisation change, so that old and new signatures never collide.
const Version = "gocrash/v1"

// TopFrames is how many normalised frames go into a signature.
const TopFrames = 5

// nilPage is the end of the page no Go or C program maps: a fault below it
// is a nil pointer dereference.
const nilPage = 0x1000

// Signature returns "gocrash/v1:<hex>" for r: a hash of its crash class and
// the top normalised frames of the code that crashed.
func Signature(r *corepipe.Report) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", Class(r))
	for _, f := range Frames(r) {
		fmt.Fprintf(h, "%s\n", f)
	}
	return Version + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Class is what kind of crash r is, with everything that varies between
// occurrences of the same bug (indices, lengths, addresses) normalised:
// "panic: runtime error: index out of range [N] with length N",
// "fatal error: concurrent map writes", "SIGSEGV nil page".
func Class(r *corepipe.Report) string {
	switch {
	case r.Panic != nil && r.Panic.Kind != corepipe.PanicKindSignal:
		// A chain of panics is classed by its last entry, as the title
		// names it (corepipe.Panic.Last).
		last := r.Panic.Last()
		s := last.Kind + ": " + Message(last.Message)
		if r.Fault != nil && last.Kind == corepipe.PanicKindFatal {
			s += " " + faultClass(r.Fault)
		}
		return s
	case r.Fault != nil:
		return faultClass(r.Fault)
	case r.Panic != nil:
		// A signal the runtime died of without a fault (SIGQUIT, a kill).
		return "signal: " + Message(r.Panic.Message)
	case r.Termination != nil && len(r.Goroutines)+len(r.Threads) == 0:
		return terminationClass(r)
	case r.Signal != nil:
		return r.Signal.Name
	}
	return "unknown"
}

func faultClass(f *corepipe.Fault) string {
	addr, err := strconv.ParseUint(strings.TrimPrefix(f.Address, "0x"), 16, 64)
	if err == nil && addr < nilPage {
		return f.Name + " nil page"
	}
	return f.Name + " fault"
}

// terminationClass identifies a container that died without a core (an OOM
// kill): why, and which container of which image — the tag left out, so
// that every version of the image shares one group.
func terminationClass(r *corepipe.Report) string {
	t := r.Termination
	s := fmt.Sprintf("termination: %s exit %d", t.Reason, t.ExitCode)
	if c := r.Container; c != nil {
		s += " container " + c.Container + " image " + imageName(c.Image)
	} else {
		s += " exe " + r.Process.Exe
	}
	return s
}

// imageName drops the tag and digest of an image reference:
// "registry:5000/team/app:v1.2@sha256:…" → "registry:5000/team/app".
func imageName(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

var reNumber = regexp.MustCompile(`0x[0-9a-fA-F]+|[0-9]+`)

// Message normalises a panic or fatal error message: numbers and addresses
// become N and 0xN, so "index out of range [5] with length 3" and "[7]
// with length 2" are one class.
func Message(msg string) string {
	return reNumber.ReplaceAllStringFunc(msg, func(s string) string {
		if strings.HasPrefix(s, "0x") {
			return "0xN"
		}
		return "N"
	})
}

// Frames returns the normalised top frames that identify where r crashed:
// the crashing goroutine's; with no crashing goroutine, the runtime
// function that threw on a system stack (corepipe.Report.ThrowSite: thread
// exhaustion is one group whichever scheduler path reached the limit), else
// (a deadlock) the biggest group's that shows any code of the program; with
// no goroutines (a C program, a stripped Go binary) the dying thread's.
func Frames(r *corepipe.Report) []string {
	if g := r.CrashingGoroutineReport(); g != nil {
		return normalise(g.Frames)
	}
	if site := r.ThrowSite(); site != "" {
		return []string{site}
	}
	if len(r.Goroutines) > 0 {
		groups := r.GoroutineGroups
		if len(groups) == 0 {
			groups = GoroutineGroups(r.Goroutines)
		}
		for _, grp := range groups {
			if fns := normalise(grp.TopFrames); len(fns) > 0 {
				return fns
			}
		}
		return nil
	}
	if len(r.Threads) > 0 {
		return normalise(r.Threads[0].Frames)
	}
	return nil
}

// normalise keeps the first TopFrames frames that are the program's own,
// named stably: the runtime's machinery and compiler wrappers dropped,
// closure and generic suffixes normalised, recursion collapsed.
func normalise(frames []corepipe.Frame) []string {
	var out []string
	for _, f := range frames {
		fn, ok := Function(f.Function)
		if !ok || (len(out) > 0 && out[len(out)-1] == fn) {
			continue
		}
		out = append(out, fn)
		if len(out) == TopFrames {
			break
		}
	}
	return out
}

var (
	reClosure = regexp.MustCompile(`\.(func|gowrap|deferwrap)[0-9]+(\.[0-9]+)*`)
	reLibOff  = regexp.MustCompile(`^(.+\.so[.0-9]*)\+0x[0-9a-f]+$`)
)

// Function normalises one function name for a signature, or reports false
// for a frame that says nothing about the bug: the Go runtime, compiler
// generated wrappers, an unknown frame.
func Function(name string) (string, bool) {
	switch {
	case name == "" || name == "?" || name == "panic",
		name == "sync.fatal", name == "sync.throw", name == "internal/sync.fatal", name == "internal/sync.throw",
		strings.HasPrefix(name, "runtime."), strings.HasPrefix(name, "internal/runtime/"),
		strings.HasPrefix(name, "runtime/internal/"),
		strings.HasSuffix(name, "-fm"),
		strings.HasPrefix(name, "_cgo_") && !strings.Contains(name, "_Cfunc_"),
		strings.HasPrefix(name, "x_cgo_"), strings.HasPrefix(name, "crosscall"):
		return "", false
	}
	if _, c, ok := strings.Cut(name, "_Cfunc_"); ok {
		// cgo's C-side wrapper carries a per-build hash.
		return "C." + c, true
	}
	if m := reLibOff.FindStringSubmatch(name); m != nil {
		return m[1], true
	}
	return corepipe.ElideTypeArgs(reClosure.ReplaceAllString(name, ".$1")), true
}

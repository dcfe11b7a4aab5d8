package corepipe

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// OwnerRules map the frames of a crash to the person or team that owns
// it, as CODEOWNERS maps files. A rules file has one "PATTERN OWNER" per
// line; blank lines and lines starting with # are ignored:
//
//	# the payments team owns its module; billing's refunds are Ana's
//	github.com/acme/payments/          team-payments
//	github.com/acme/billing/refund*    ana
//	internal/cache/*.go                team-platform
//
// A PATTERN with a '*' is a path.Match glob that matches the whole path or
// its end from a '/' on (internal/cache/*.go matches
// /src/app/internal/cache/lru.go), otherwise a prefix. It is
// matched against a frame's function as the runtime prints it (main.handle,
// so "main." is package main), the function's package path with a trailing
// '/' (github.com/acme/payments/ledger/), and its file as the binary has it
// (absolute, or a module path under -trimpath). For each frame
// the last rule that matches wins, as in CODEOWNERS; the crash's owner is
// that of its innermost application frame that any rule matches, else of
// its innermost frame that any rule matches.
type OwnerRules struct {
	rules []ownerRule
}

type ownerRule struct {
	pattern, owner string
	glob           bool
}

// maxOwnerRules bounds a rules file: each crash is matched against every rule.
const maxOwnerRules = 10000

// ParseOwners reads a rules file.
func ParseOwners(r io.Reader) (*OwnerRules, error) {
	o := &OwnerRules{}
	err := EachRule(r, func(n int, fields []string) error {
		if len(fields) != 2 || !printable(fields[1], maxTriageText) {
			return fmt.Errorf("%w: owners line %d: want \"PATTERN OWNER\"", ErrInvalid, n)
		}
		rule := ownerRule{pattern: fields[0], owner: fields[1], glob: strings.Contains(fields[0], "*")}
		if rule.glob {
			if _, err := path.Match(rule.pattern, ""); err != nil {
				return fmt.Errorf("%w: owners line %d: pattern %q: %v", ErrInvalid, n, Clip(rule.pattern, 64), err)
			}
		}
		if len(o.rules) == maxOwnerRules {
			return fmt.Errorf("%w: owners: more than %d rules", ErrInvalid, maxOwnerRules)
		}
		o.rules = append(o.rules, rule)
		return nil
	})
	switch {
	case errors.Is(err, ErrInvalid):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("owners: %w", err)
	}
	return o, nil
}

// Owner is who owns crash r, "" when no rule says.
func (o *OwnerRules) Owner(r *Report) string {
	if o == nil || len(o.rules) == 0 {
		return ""
	}
	frames := r.TopFrames
	if g := r.CrashingGoroutineReport(); g != nil {
		frames = g.Frames
	} else if th := r.dyingThread(); th != nil && len(frames) == 0 {
		frames = th.Frames
	}
	fallback := ""
	for i, f := range frames {
		if i == maxSearchedFrames {
			break
		}
		owner := o.frameOwner(f)
		if owner == "" {
			continue
		}
		if r.InApp(f) {
			return owner
		}
		if fallback == "" {
			fallback = owner
		}
	}
	return fallback
}

// maxSearchedFrames is how deep Owner looks: a stack overflow's millionth
// frame names nobody new.
const maxSearchedFrames = 100

func (o *OwnerRules) frameOwner(f Frame) string {
	pkg := packageOf(f.Function)
	if pkg != "" {
		pkg += "/"
	}
	owner := ""
	for _, rule := range o.rules {
		if rule.matches(f.Function) || rule.matches(pkg) || rule.matches(f.File) {
			owner = rule.owner
		}
	}
	return owner
}

func (rule ownerRule) matches(s string) bool {
	if s == "" {
		return false
	}
	if !rule.glob {
		return strings.HasPrefix(s, rule.pattern)
	}
	s = strings.TrimSuffix(s, "/")
	for {
		if ok, _ := path.Match(rule.pattern, s); ok {
			return true
		}
		i := strings.Index(s, "/")
		if i < 0 {
			return false
		}
		s = s[i+1:]
	}
}

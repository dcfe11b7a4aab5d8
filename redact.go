package corepipe

import (
	"regexp"
	"strings"
	"unicode"
)

// Redacted replaces a secret in the command lines and environments shown to
// people who may read crashes but not their cores (the API's viewer role).
const Redacted = "[redacted]"

// The scrubber below is the one answer to "what in a command line or an
// environment is a secret". It errs on the side of hiding: a debugger (who
// may download the core, which holds every secret anyway) sees the raw text.
//
// A name is secret when one of its words (split at '-', '_', '.', and
// camelCase humps) is one of secretWords or contains one of secretParts, unless its last word says it names
// where a secret is rather than the secret (--token-file, DB_PASSWORD_PATH).
var (
	secretWords = map[string]bool{
		"password": true, "passwd": true, "pass": true, "pwd": true, "passphrase": true,
		"secret": true, "secrets": true, "token": true, "tokens": true, "key": true, "apikey": true,
		"auth": true, "authorization": true, "credential": true, "credentials": true, "creds": true,
		"private": true, "cookie": true, "session": true, "dsn": true, "bearer": true, "jwt": true,
		"signature": true, "sig": true,
	}
	// secretParts are found inside a word too: PGPASSWORD, authtoken.
	secretParts   = []string{"password", "passwd", "passphrase", "secret", "token", "apikey", "credential", "privatekey"}
	locationWords = map[string]bool{"file": true, "path": true, "dir": true, "name": true, "env": true, "ref": true}

	// userinfoPassword is the password of a URL's userinfo, anywhere in a
	// string: postgres://app:hunter2@db/ keeps "app" and loses "hunter2".
	userinfoPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:\s]*):[^/?#@\s]*@`)
	// queryParam is a name=value pair of a URL query or a similar list.
	queryParam = regexp.MustCompile(`([?&;])([A-Za-z0-9_.-]+)=([^&;#\s]*)`)
)

// SecretName reports whether a flag or variable called name (dashes
// included or not) would hold a secret.
func SecretName(name string) bool {
	words := nameWords(strings.TrimLeft(name, "-"))
	if len(words) == 0 || locationWords[words[len(words)-1]] && len(words) > 1 {
		return false
	}
	for _, w := range words {
		if secretWords[w] {
			return true
		}
		for _, p := range secretParts {
			if strings.Contains(w, p) {
				return true
			}
		}
	}
	return false
}

func nameWords(name string) []string {
	var words []string
	var cur []rune
	prevLower := false
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for _, r := range name {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			flush()
		}
		cur = append(cur, r)
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	flush()
	return words
}

// RedactArgs returns a copy of a command line with its secrets replaced by
// Redacted:
//   - the value of a secret-named flag: --password=x, -token=x, and
//     --password x (the next argument, unless it is itself a flag);
//   - a secret-named NAME=VALUE argument (env PGPASSWORD=x prog);
//   - the password of a URL's userinfo, and the values of secret-named
//     query parameters, anywhere in an argument.
//
// The program (argv[0]) is kept as it is but for URL passwords.
func RedactArgs(argv []string) []string {
	if argv == nil {
		return nil
	}
	out := make([]string, len(argv))
	valueNext := false
	for i, a := range argv {
		switch {
		case valueNext && !strings.HasPrefix(a, "-"):
			out[i], valueNext = Redacted, false
			continue
		case i > 0 && strings.HasPrefix(a, "-") && a != "-" && a != "--":
			name, _, hasValue := strings.Cut(a, "=")
			valueNext = !hasValue && SecretName(name)
			if hasValue && SecretName(name) {
				out[i] = name + "=" + Redacted
				continue
			}
		default:
			valueNext = false
			if name, _, ok := strings.Cut(a, "="); ok && i > 0 && !strings.ContainsAny(name, " /:") && SecretName(name) {
				out[i] = name + "=" + Redacted
				continue
			}
		}
		out[i] = redactValue(a)
	}
	return out
}

// RedactEnviron returns a copy of an environment (the collector's
// allowlisted variables) with the values of secret-named variables, and
// URL passwords in the others, replaced by Redacted.
func RedactEnviron(env map[string]string) map[string]string {
	if env == nil {
		return nil
	}
	out := make(map[string]string, len(env))
	for k, v := range env {
		if SecretName(k) {
			v = Redacted
		} else {
			v = redactValue(v)
		}
		out[k] = v
	}
	return out
}

// redactValue hides what is secret inside a free-form string.
func redactValue(s string) string {
	if !strings.Contains(s, "://") && !strings.ContainsAny(s, "?&;") {
		return s
	}
	s = userinfoPassword.ReplaceAllString(s, "${1}:"+Redacted+"@")
	return queryParam.ReplaceAllStringFunc(s, func(m string) string {
		sub := queryParam.FindStringSubmatch(m)
		if !SecretName(sub[2]) {
			return m
		}
		return sub[1] + sub[2] + "=" + Redacted
	})
}

// Redacted returns p with its command line scrubbed by RedactArgs.
func (p Process) Redacted() Process {
	p.Cmdline = RedactArgs(p.Cmdline)
	return p
}

// Redacted returns a shallow copy of r for readers who may not see the
// crashed process's secrets: the command line is scrubbed by RedactArgs.
func (r *Report) Redacted() *Report {
	c := *r
	c.Process = r.Process.Redacted()
	return &c
}

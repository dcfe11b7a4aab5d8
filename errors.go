package corepipe

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors that adapters translate their own errors into, so that one
// place (the API) can map them to a status. Each one is the sentinel of an
// error code: errors.Is(err, ErrNotFound) holds for an *Error with Code
// ENOTFOUND too.
var (
	ErrNotFound     = errors.New("not found")
	ErrInvalid      = errors.New("invalid")
	ErrUnavailable  = errors.New("unavailable")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
)

// Error codes: what a caller can do about an error, in WTF Dial's spelling.
const (
	ENOTFOUND     = "not_found"
	EINVALID      = "invalid"
	EUNAVAILABLE  = "unavailable"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	// EINTERNAL is a bug or an outage nobody outside can act on.
	EINTERNAL = "internal"
)

var codeSentinels = []struct {
	code string
	err  error
}{
	{ENOTFOUND, ErrNotFound},
	{EINVALID, ErrInvalid},
	{EUNAVAILABLE, ErrUnavailable},
	{EUNAUTHORIZED, ErrUnauthorized},
	{EFORBIDDEN, ErrForbidden},
}

// Error is the one user-facing error form. Message is safe to show anyone
// who may see the crash list (a viewer): it names nothing of the
// infrastructure. Err carries the operator's detail (endpoint, bucket, key,
// dial error) for the log only; Error() includes it, ErrorMessage does not.
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Message
	}
	// Wrap copies a sentinel-wrapped error's whole text into the message:
	// the detail would only repeat it.
	if detail := e.Err.Error(); !strings.HasSuffix(e.Message, detail) {
		return e.Message + ": " + detail
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes the code's sentinel match, so callers that test for
// ErrNotFound keep working whichever form an adapter returns.
func (e *Error) Is(target error) bool {
	for _, s := range codeSentinels {
		if s.code == e.Code && s.err == target {
			return true
		}
	}
	return false
}

// Errorf returns an *Error with code and a message safe for viewers.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap adds context to err's safe message ("crash %s: open core") and
// keeps its code and its detail.
func Wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	e := &Error{Code: ErrorCode(err), Message: fmt.Sprintf(format, args...) + ": " + ErrorMessage(err), Err: err}
	if inner, ok := err.(*Error); ok {
		e.Err = inner.Err
	}
	return e
}

// ErrorCode is the code of err: an *Error's own, else that of the sentinel
// err wraps, else EINTERNAL (nil has none: "").
func ErrorCode(err error) string {
	code, _ := classify(err)
	return code
}

// ErrorMessage is what a client may be told about err. An *Error says its
// Message. An error wrapping a sentinel was written for the client by code
// that translated it (the API's "status %q: want …"), and says its text.
// Anything else may name files, hosts or queries: it is only "internal
// error", and the caller logs err itself.
func ErrorMessage(err error) string {
	_, msg := classify(err)
	return msg
}

// classify is the one reading of err behind ErrorCode and ErrorMessage.
func classify(err error) (code, message string) {
	if err == nil {
		return "", ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code, e.Message
	}
	for _, s := range codeSentinels {
		if errors.Is(err, s.err) {
			return s.code, err.Error()
		}
	}
	return EINTERNAL, "internal error"
}

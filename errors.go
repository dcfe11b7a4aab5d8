package corepipe

import "errors"

// Sentinel errors that adapters translate their own errors into, so that one
// place (the API) can map them to a status.
var (
	ErrNotFound     = errors.New("not found")
	ErrInvalid      = errors.New("invalid")
	ErrUnavailable  = errors.New("unavailable")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
)

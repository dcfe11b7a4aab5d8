package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/corepipe/corepipe"
)

var errNotReady = fmt.Errorf("%w: the index is still catching up with the stored reports", corepipe.ErrUnavailable)

// errorStatus is the one place where domain errors become HTTP statuses; the
// JSON API and the UI both go through it.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, corepipe.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, corepipe.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, corepipe.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, corepipe.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, corepipe.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errorMessage is what the client is told. An error that is not one of the
// domain's is a bug or an outage whose text may name files, hosts or queries:
// it is logged with the request and replaced by a generic message.
func (s *Server) errorMessage(r *http.Request, err error) (int, string) {
	status := errorStatus(err)
	if status == http.StatusInternalServerError {
		attrs := []any{slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err)}
		if id := r.PathValue("id"); id != "" {
			attrs = append(attrs, slog.String("crash_id", id))
		}
		s.log.ErrorContext(r.Context(), "request failed", attrs...)
		return status, "internal error"
	}
	return status, err.Error()
}

// errorBody is every JSON error: {"error": "…"}.
type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := s.errorMessage(r, err)
	writeJSON(w, status, errorBody{msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status is sent; an encoding error here is a client gone away.
	_ = json.NewEncoder(w).Encode(v)
}

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

// codeStatus is the one map from the domain's error codes to HTTP statuses;
// the JSON API and the UI both go through it.
var codeStatus = map[string]int{
	corepipe.EINVALID:      http.StatusBadRequest,
	corepipe.EUNAUTHORIZED: http.StatusUnauthorized,
	corepipe.EFORBIDDEN:    http.StatusForbidden,
	corepipe.ENOTFOUND:     http.StatusNotFound,
	corepipe.EUNAVAILABLE:  http.StatusServiceUnavailable,
}

func errorStatus(err error) int {
	if status, ok := codeStatus[corepipe.ErrorCode(err)]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// errorMessage is what the client is told: corepipe.ErrorMessage, safe for
// a viewer. Whatever the client is not told (an internal error, the
// endpoint and key behind an unavailable store) goes to the log with the
// request.
func (s *Server) errorMessage(r *http.Request, err error) (int, string) {
	status, msg := errorStatus(err), corepipe.ErrorMessage(err)
	if e, ok := errors.AsType[*corepipe.Error](err); status >= 500 || ok && e.Err != nil {
		attrs := []any{slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status), slog.Any("err", err)}
		if id := r.PathValue("id"); id != "" {
			attrs = append(attrs, slog.String(corepipe.LogKeyCrash, id))
		}
		s.log.ErrorContext(r.Context(), "request failed", attrs...)
	}
	return status, msg
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

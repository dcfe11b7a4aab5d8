package api

import (
	"fmt"
	"net/http"

	"github.com/corepipe/corepipe"
)

// getConsole streams a kernel panic's reassembled console log. It is for
// debuggers only: a node's console may print what its kernel and drivers
// were given (command lines, keys in module parameters).
func (s *Server) getConsole(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	sum, err := s.crash(r.Context(), id)
	if err != nil {
		return err
	}
	console := sum.Artifacts.Console
	if console == nil || console.Key == "" {
		return fmt.Errorf("%w: crash %s is not a kernel panic with a console log", corepipe.ErrNotFound, id)
	}
	rc, err := s.openArtifact(r.Context(), id, "console log", "cores/", console.Key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return s.stream(w, r, rc, download("text/plain; charset=utf-8", "console-"+id+".txt"))
}

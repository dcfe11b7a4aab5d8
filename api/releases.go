package api

import (
	"context"
	"net/http"

	"github.com/corepipe/corepipe"
)

// Releaser is what an index needs for the releases page (sqlite.Index is
// one); the server asks its Index for it, as for Triager.
type Releaser interface {
	Releases(ctx context.Context) ([]corepipe.Release, error)
}

type releaseList struct {
	Releases []corepipe.Release `json:"releases"`
}

func (s *Server) releases(ctx context.Context) ([]corepipe.Release, error) {
	rel, ok := s.index.(Releaser)
	if !ok {
		return nil, &corepipe.Error{Code: corepipe.EUNAVAILABLE, Message: "this server's index lists no releases"}
	}
	return rel.Releases(ctx)
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) error {
	rs, err := s.releases(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, releaseList{Releases: rs})
	return nil
}

func (s *Server) uiReleases(w http.ResponseWriter, r *http.Request) error {
	rs, err := s.releases(r.Context())
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, s.pages.releases, releaseList{Releases: rs})
	return nil
}

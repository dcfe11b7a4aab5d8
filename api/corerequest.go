package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
)

// CoreRequester asks the node that kept a crash's core to upload it
// (queue/nats's RequestCore).
type CoreRequester interface {
	RequestCore(ctx context.Context, node, id string) error
}

// requestCore asks the node that keeps a crash's core to upload it: 202
// once asked, 200 when the core is stored already, 404 when it is gone or
// was never kept.
func (s *Server) requestCore(w http.ResponseWriter, r *http.Request) error {
	if err := s.checkWrite(r); err != nil {
		return err
	}
	loc, err := s.askForCore(r)
	if err != nil {
		return err
	}
	if loc.State == corepipe.CoreStored {
		writeJSON(w, http.StatusOK, wire.CoreRequested{Location: loc})
		return nil
	}
	writeJSON(w, http.StatusAccepted, wire.CoreRequested{Requested: true, Location: loc})
	return nil
}

// uiRequestCore is the crash page's "Request the core" button.
func (s *Server) uiRequestCore(w http.ResponseWriter, r *http.Request) error {
	if err := s.parseForm(w, r); err != nil {
		return err
	}
	if !equalSecret(r.PostForm.Get("csrf"), s.formCSRF(identityOf(r))) {
		return errCSRF
	}
	if _, err := s.askForCore(r); err != nil {
		return err
	}
	http.Redirect(w, r, "/crashes/"+r.PathValue("id")+"?core=requested", http.StatusSeeOther)
	return nil
}

// askForCore publishes the request for the core of the crash named in r's
// path when its node keeps it, and returns where the core is.
func (s *Server) askForCore(r *http.Request) (corepipe.CoreLocation, error) {
	id := r.PathValue("id")
	sum, err := s.crash(r.Context(), id)
	if err != nil {
		return corepipe.CoreLocation{}, err
	}
	if err := s.suidOnlyAdmin(r, sum, "core"); err != nil {
		return corepipe.CoreLocation{}, err
	}
	loc := sum.Artifacts.Core.Where(s.now())
	switch loc.State {
	case corepipe.CoreStored:
		return loc, nil
	case corepipe.CoreOnNode:
	default:
		return loc, fmt.Errorf("%w: crash %s: its core cannot be requested: %s", corepipe.ErrNotFound, id, loc)
	}
	if s.requests == nil {
		return loc, fmt.Errorf("%w: core requests need the queue, which this server was not given", corepipe.ErrUnavailable)
	}
	if err := s.requests.RequestCore(r.Context(), loc.Node, id); err != nil {
		return loc, corepipe.Wrap(err, "crash %s: request core", id)
	}
	s.log.InfoContext(r.Context(), "core requested", corepipe.LogKeyCrash, id, "node", loc.Node, "by", identityOf(r).describe())
	return loc, nil
}

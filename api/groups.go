package api

import (
	"context"
	"net/http"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/api/wire"
)

// groupCrashes is how many of its most recent crashes a group's page and
// JSON carry; the crash list filtered by signature has them all.
const groupCrashes = 20

// groupDetail is one group with what its page shows: the recent crashes,
// and how its crashes spread over builds and workloads.
type groupDetail struct {
	Group     *corepipe.Group    `json:"group"`
	Versions  []corepipe.Share   `json:"versions"`
	Workloads []corepipe.Share   `json:"workloads"`
	Crashes   []*corepipe.Report `json:"crashes"`
	// History is who changed the group's triage, newest first.
	History []corepipe.TriageEvent `json:"history"`
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	_, groups, next, err := listOf(r, wire.ParseGroupQuery, s.index.Groups)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.GroupList{Groups: groups, NextCursor: next})
	return nil
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	d, err := s.groupDetail(r.Context(), r.PathValue("signature"))
	if err != nil {
		return err
	}
	d.Crashes = redact(r, d.Crashes)
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (s *Server) groupDetail(ctx context.Context, signature string) (*groupDetail, error) {
	g, err := s.index.Group(ctx, signature)
	if err != nil {
		return nil, err
	}
	d := &groupDetail{Group: g}
	if d.Versions, err = s.index.Versions(ctx, signature); err != nil {
		return nil, err
	}
	if d.Workloads, err = s.index.Workloads(ctx, signature); err != nil {
		return nil, err
	}
	if d.Crashes, _, err = s.index.Crashes(ctx, corepipe.CrashFilter{Signature: signature, Limit: groupCrashes}); err != nil {
		return nil, err
	}
	if d.Crashes == nil {
		d.Crashes = []*corepipe.Report{}
	}
	if d.History, err = s.history(ctx, signature); err != nil {
		return nil, err
	}
	return d, nil
}

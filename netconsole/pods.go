package netconsole

import (
	"context"
	"time"

	"github.com/corepipe/corepipe"
)

// IndexPods names a node's pods from the crashes the index holds of it:
// the pods seen on the node within Window before its panic. It knows only
// pods that reported something; the agent's informer knows them all.
type IndexPods struct {
	Index  corepipe.Index
	Window time.Duration
}

// maxIndexPods bounds what one panic lists.
const maxIndexPods = 200

// PodsOn implements PodLister.
func (p IndexPods) PodsOn(ctx context.Context, node string, at time.Time) ([]corepipe.PodRef, error) {
	crashes, _, err := p.Index.Crashes(ctx, corepipe.CrashFilter{Node: node, Since: at.Add(-p.Window), Limit: maxIndexPods})
	if err != nil {
		return nil, err
	}
	seen := map[corepipe.PodRef]bool{}
	var pods []corepipe.PodRef
	for _, r := range crashes {
		c := r.Container
		if c == nil || c.Pod == "" || r.CapturedAt.After(at) {
			continue
		}
		ref := corepipe.PodRef{Namespace: c.Namespace, Pod: c.Pod, UID: c.PodUID}
		if !seen[ref] {
			seen[ref] = true
			pods = append(pods, ref)
		}
	}
	return pods, nil
}

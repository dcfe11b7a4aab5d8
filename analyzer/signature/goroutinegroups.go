package signature

import (
	"sort"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// groupTopFrames is how many frames a group shows.
const groupTopFrames = 5

// GoroutineGroups buckets goroutines with identical stacks, as panicparse does: the
// same status and wait reason, the same function, file and line in every
// frame, created by the same function. The biggest group comes first; ties
// keep the order of their first goroutine.
func GoroutineGroups(gs []corepipe.Goroutine) []corepipe.GoroutineGroup {
	index := map[string]int{}
	var groups []corepipe.GoroutineGroup
	var key strings.Builder
	for i := range gs {
		g := &gs[i]
		creator := creator(g.CreatedBy)
		key.Reset()
		key.WriteString(g.Status)
		key.WriteByte(0)
		key.WriteString(g.WaitReason)
		key.WriteByte(0)
		key.WriteString(creator)
		key.WriteByte(0)
		key.WriteString(strconv.Itoa(g.FramesElided))
		for _, f := range g.Frames {
			key.WriteByte(0)
			key.WriteString(f.Function)
			key.WriteByte(1)
			key.WriteString(f.File)
			key.WriteByte(1)
			key.WriteString(strconv.Itoa(f.Line))
		}
		k := key.String()
		at, ok := index[k]
		if !ok {
			at = len(groups)
			index[k] = at
			top := g.Frames[:min(len(g.Frames), groupTopFrames)]
			groups = append(groups, corepipe.GoroutineGroup{
				Status: g.Status, WaitReason: g.WaitReason, CreatedBy: creator,
				TopFrames: append([]corepipe.Frame(nil), top...),
			})
		}
		groups[at].Count++
		groups[at].GoroutineIDs = append(groups[at].GoroutineIDs, g.ID)
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].Count > groups[j].Count })
	return groups
}

// creator drops the " in goroutine N" the runtime appends to created-by,
// which differs for every goroutine a loop starts.
func creator(createdBy string) string {
	fn, _, _ := strings.Cut(createdBy, " in goroutine ")
	return fn
}

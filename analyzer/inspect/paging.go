package inspect

// shallowDepth is how deep a goroutine is unwound first. Delve allocates
// room for the whole depth asked for, a few hundred bytes a frame, and
// keeps it in its cache until the page is done: asking for MaxFrames every
// time cost 300 KiB per goroutine, 30 GiB of garbage on 100 000
// goroutines. Almost every stack is shallower; a deeper one is continued
// from delve's cache.
const shallowDepth = 16

// minGSize bounds how many goroutines a core can hold: every goroutine has
// a runtime.g struct of more than this (about 400 bytes in Go 1.26), plus an
// allgs slot, in the dumped memory.
const minGSize = 256

// allgLimit is how many entries of runtime.allgs are worth paging through:
// runtime.allglen, which a damaged core can set to anything, clamped to what
// the core's size can hold and to maxAllg.
func allgLimit(allglen uint64, coreSize int64) (limit int, clamped bool) {
	limit = maxAllg
	if coreSize > 0 {
		limit = int(min(int64(maxAllg), coreSize/minGSize))
	}
	if allglen == 0 {
		return limit, false
	}
	if allglen > uint64(limit) {
		return limit, true
	}
	return int(allglen), false
}

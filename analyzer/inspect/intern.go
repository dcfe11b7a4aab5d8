package inspect

import (
	"encoding/binary"
	"hash/maphash"
	"slices"

	"github.com/corepipe/corepipe"
)

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

// sharing makes goroutines with the same stack share one []corepipe.Frame
// and one created-by string: 100 000 goroutines parked in a handful of
// places cost a handful of stacks. The report's frames must therefore be
// treated as read-only.
type sharing struct {
	seed     maphash.Seed
	stacks   map[uint64][]corepipe.Frame
	creators map[string]string
}

func newSharing() *sharing {
	return &sharing{seed: maphash.MakeSeed(), stacks: map[uint64][]corepipe.Frame{}, creators: map[string]string{}}
}

// frames returns a slice equal to fs, shared with earlier goroutines that
// had the same stack. On a hash collision the later stack keeps its own
// slice.
func (s *sharing) frames(fs []corepipe.Frame) []corepipe.Frame {
	if len(fs) == 0 {
		return fs
	}
	var (
		h    maphash.Hash
		line [8]byte
	)
	h.SetSeed(s.seed)
	for _, f := range fs {
		h.WriteString(f.Function)
		h.WriteByte(0)
		h.WriteString(f.File)
		h.WriteByte(0)
		binary.LittleEndian.PutUint64(line[:], uint64(f.Line))
		h.Write(line[:])
		h.WriteString(f.PC)
		h.WriteByte(0)
	}
	key := h.Sum64()
	if seen, ok := s.stacks[key]; ok {
		if slices.Equal(seen, fs) {
			return seen
		}
		return fs
	}
	fs = slices.Clip(fs)
	s.stacks[key] = fs
	return fs
}

// creator returns a string equal to c, shared with earlier goroutines.
func (s *sharing) creator(c string) string {
	if c == "" {
		return c
	}
	if seen, ok := s.creators[c]; ok {
		return seen
	}
	s.creators[c] = c
	return c
}

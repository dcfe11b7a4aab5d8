package inspect

import (
	"encoding/binary"
	"hash/maphash"
	"slices"

	"github.com/corepipe/corepipe"
)

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

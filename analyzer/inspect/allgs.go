package inspect

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/proc"
)

// A page of runtime.allgs is read here in two reads of the core, the
// pointers and then each runtime.g as one block, its fields at the offsets
// DWARF gives once: delve's own listing loads every field of every g by
// name, two thirds of what reading 100 000 parked goroutines cost once
// their stacks were walked from the function table. A goroutine this
// reading cannot report by itself (running on a thread, in a system call,
// carrying pprof labels, or with a stack the walk leaves to delve) is
// listed by delve, which knows all of those.

// delveListsAll makes delve list and unwind every goroutine, for tests that
// compare the two ways.
var delveListsAll = false

// gLayout is where the fields read of a runtime.g are.
type gLayout struct {
	size                                    int64
	goid, status, waitReason, gopc, parent  int64
	schedPC, schedSP, schedBP, mPtr, labels int64
	statusSize                              int64
}

// rawG is a runtime.g as read from the core.
type rawG struct {
	id, gopc, parent uint64
	pc, sp, bp       uint64
	status           uint64
	waitReason       int64
	m, labels        uint64
}

// newGLayout finds the fields of runtime.g in the target's DWARF; an
// error leaves every goroutine to delve.
func newGLayout(bi *proc.BinaryInfo) (*gLayout, error) {
	t, err := bi.FindType("runtime.g")
	if err != nil {
		return nil, err
	}
	st, ok := godwarf.ResolveTypedef(t).(*godwarf.StructType)
	if !ok {
		return nil, fmt.Errorf("runtime.g is a %T", t)
	}
	l := &gLayout{size: st.ByteSize, parent: -1}
	fields := map[string]*godwarf.StructField{}
	for _, f := range st.Field {
		fields[f.Name] = f
	}
	word := func(name string, dst *int64) error {
		f := fields[name]
		if f == nil || f.Type.Size() != 8 {
			return fmt.Errorf("runtime.g.%s is missing or not a word", name)
		}
		*dst = f.ByteOffset
		return nil
	}
	var sched int64
	for _, w := range []struct {
		name string
		dst  *int64
	}{{"goid", &l.goid}, {"gopc", &l.gopc}, {"m", &l.mPtr}, {"labels", &l.labels}} {
		if err := word(w.name, w.dst); err != nil {
			return nil, err
		}
	}
	if f := fields["parentGoid"]; f != nil && f.Type.Size() == 8 {
		l.parent = f.ByteOffset
	}
	s := fields["sched"]
	if s == nil {
		return nil, errors.New("runtime.g has no sched")
	}
	sched = s.ByteOffset
	gobuf, ok := godwarf.ResolveTypedef(s.Type).(*godwarf.StructType)
	if !ok {
		return nil, errors.New("runtime.g.sched is not a struct")
	}
	l.schedBP = -1
	for _, f := range gobuf.Field {
		switch f.Name {
		case "pc":
			l.schedPC = sched + f.ByteOffset
		case "sp":
			l.schedSP = sched + f.ByteOffset
		case "bp":
			l.schedBP = sched + f.ByteOffset
		}
	}
	if l.schedPC == 0 || l.schedSP == 0 {
		return nil, errors.New("runtime.gobuf has no pc or sp")
	}
	f := fields["atomicstatus"]
	if f == nil || (f.Type.Size() != 4 && f.Type.Size() != 8) {
		return nil, errors.New("runtime.g.atomicstatus is missing")
	}
	l.status, l.statusSize = f.ByteOffset, f.Type.Size()
	f = fields["waitreason"]
	if f == nil || f.Type.Size() != 1 {
		return nil, errors.New("runtime.g.waitreason is missing")
	}
	l.waitReason = f.ByteOffset
	return l, nil
}

func (l *gLayout) decode(b []byte) rawG {
	le := binary.LittleEndian
	g := rawG{
		id: le.Uint64(b[l.goid:]), gopc: le.Uint64(b[l.gopc:]),
		pc: le.Uint64(b[l.schedPC:]), sp: le.Uint64(b[l.schedSP:]),
		waitReason: int64(b[l.waitReason]),
		m:          le.Uint64(b[l.mPtr:]), labels: le.Uint64(b[l.labels:]),
	}
	if l.statusSize == 4 {
		g.status = uint64(le.Uint32(b[l.status:]))
	} else {
		g.status = le.Uint64(b[l.status:])
	}
	if l.schedBP >= 0 {
		g.bp = le.Uint64(b[l.schedBP:])
	}
	if l.parent >= 0 {
		g.parent = le.Uint64(b[l.parent:])
	}
	return g
}

// allgsPage reads allgs[start:end]: the g pointers, then each g, calling
// fn with the index, and the g (nil when it could not be read).
func (a *analysis) allgsPage(start, end int, fn func(i int, g *rawG)) error {
	l := a.gLayout
	allgs := a.symbols()["runtime.allgs"]
	if allgs.addr == 0 {
		return errors.New("no runtime.allgs symbol")
	}
	mem := a.t.Memory()
	var hdr [8]byte
	if _, err := mem.ReadMemory(hdr[:], allgs.addr); err != nil {
		return fmt.Errorf("read runtime.allgs: %w", err)
	}
	base := binary.LittleEndian.Uint64(hdr[:])
	ptrs := make([]byte, 8*(end-start))
	if _, err := mem.ReadMemory(ptrs, base+8*uint64(start)); err != nil {
		return fmt.Errorf("read runtime.allgs[%d:%d]: %w", start, end, err)
	}
	if cap(a.gBuf) < int(l.size) {
		a.gBuf = make([]byte, l.size)
	}
	buf := a.gBuf[:l.size]
	for i := start; i < end; i++ {
		p := binary.LittleEndian.Uint64(ptrs[8*(i-start):])
		if _, err := mem.ReadMemory(buf, p); p == 0 || err != nil {
			fn(i, nil)
			continue
		}
		g := l.decode(buf)
		fn(i, &g)
	}
	return nil
}

// useGLayout reads runtime.g's layout, so that pages of allgs are read
// directly; without it (no DWARF type, no allgs symbol), or where
// schedFrames walks no stack (no function table, not amd64), delve lists
// them.
func (a *analysis) useGLayout() {
	if delveListsAll || a.symbols()["runtime.allgs"].addr == 0 || a.funcTable() == nil || a.t.BinInfo().Arch.Name != "amd64" {
		return
	}
	l, err := newGLayout(a.t.BinInfo())
	if err != nil {
		a.opts.Logger.Warn("delve lists the goroutines", "err", err)
		return
	}
	a.gLayout = l
}

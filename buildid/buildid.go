// Package buildid reads the GNU build ID (note "GNU", NT_GNU_BUILD_ID) and
// the Go build ID (note "Go", type 4) of an ELF file, and nothing else.
//
// Its one documented behaviour: it reads only the ELF header, at most
// MaxHeaders entries of the program header table and of the section header
// table, and at most MaxNoteBytes of each of the first MaxNotes PT_NOTE
// segments and then SHT_NOTE sections, with one reused buffer. The
// section-name table is never read: the loader ignores sections, so a file
// can claim any size for it at no cost (debug/elf allocates it whole). Section
// notes are needed because Go's linker leaves .note.gnu.build-id out of its
// PT_NOTE segment. Memory and I/O are bounded by constants whatever the file
// claims, which is what lets a root collector read an attacker's executable
// before the core.
//
// The same reader serves the executable on disk (Read) and the executable's
// first page as a core holds it (ReadImage), so the key an executable is
// stored under and the check that it belongs to a core rest on one parser.
package buildid

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Limits. Real executables have about a dozen program headers and a few
// hundred bytes of notes.
const (
	MaxHeaders   = 256
	MaxNotes     = 16
	MaxNoteBytes = 64 << 10
	// maxIDLen bounds a build ID's descriptor: GNU IDs are 8 to 20 bytes
	// (up to 64 for a hash of choice), Go's are about 83 characters.
	maxIDLen = 256
)

// ELF constants (debug/elf names them, but importing it invites its
// whole-table loads).
const (
	ptNote       = 4
	shtNote      = 7
	ntGNUBuildID = 3
	ntGoBuildID  = 4
)

// ErrNotELF is returned, wrapped, for input that is not an ELF file.
var ErrNotELF = errors.New("not an ELF file")

// IDs are an ELF file's build IDs; empty when the file has none.
type IDs struct {
	// GNU is the NT_GNU_BUILD_ID descriptor in lowercase hex.
	GNU string
	// Go is the Go toolchain's build ID. A note whose text is not a
	// plausible Go build ID (printable, no '.', no space) is ignored: it
	// names blob keys and file names.
	Go string
}

// Read returns the build IDs of the ELF file r. It fails only when the ELF
// header cannot be read or is not one; notes that are missing, cut short or
// malformed only leave IDs empty.
func Read(r io.ReaderAt) (IDs, error) {
	var ids IDs
	var ident [64]byte
	n, err := r.ReadAt(ident[:], 0)
	if n < 52 { // the 32-bit header is the shorter
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return ids, fmt.Errorf("read ELF header: %w", err)
	}
	h, err := parseHeader(ident[:n])
	if err != nil {
		return ids, err
	}
	// Headers are read one at a time: a table's claimed size never becomes
	// an allocation.
	nr := noteReader{r: r, order: h.order, ids: &ids}
	var hdr [64]byte
	for _, t := range []table{h.progs, h.sects} {
		if int(t.entsize) < t.size {
			// Entries shorter than the format's would overlap: no valid
			// file has them.
			continue
		}
		for i := range min(t.num, MaxHeaders) {
			off := t.off + uint64(i)*uint64(t.entsize)
			if off < t.off || off > 1<<62 {
				break
			}
			if _, err := r.ReadAt(hdr[:t.size], int64(off)); err != nil {
				break
			}
			typ, noff, size := t.parse(hdr[:t.size])
			if typ == t.note && !nr.read(noff, size) {
				return ids, nil
			}
		}
	}
	return ids, nil
}

// noteReader reads note regions within the limits, into one buffer.
type noteReader struct {
	r     io.ReaderAt
	order binary.ByteOrder
	ids   *IDs
	buf   []byte
	n     int
}

// read walks the notes in size bytes at off and reports whether reading
// more could still find something.
func (nr *noteReader) read(off, size uint64) bool {
	if size == 0 || off > 1<<62 {
		return true
	}
	if nr.n++; nr.n > MaxNotes {
		return false
	}
	size = min(size, MaxNoteBytes)
	if nr.buf == nil {
		nr.buf = make([]byte, MaxNoteBytes)
	}
	k, _ := nr.r.ReadAt(nr.buf[:size], int64(off))
	walk(nr.buf[:k], nr.order, nr.ids)
	return nr.ids.GNU == "" || nr.ids.Go == ""
}

// ReadImage is Read of an ELF image in memory, such as the first page of an
// executable as a core dumped it: notes that lie beyond the image are not
// found.
func ReadImage(b []byte) (IDs, error) {
	return Read(bytes.NewReader(b))
}

// table is where a header table is and how to read its entries.
type table struct {
	off     uint64
	entsize uint16
	num     uint16
	size    int    // bytes of one entry this class defines
	note    uint32 // the entry type of notes
	parse   func([]byte) (typ uint32, off, size uint64)
}

// header is what Read needs of the ELF header.
type header struct {
	order        binary.ByteOrder
	progs, sects table
}

func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < 16 || string(b[:4]) != "\x7fELF" {
		return h, ErrNotELF
	}
	var o binary.ByteOrder
	switch b[5] {
	case 1:
		o = binary.LittleEndian
	case 2:
		o = binary.BigEndian
	default:
		return h, fmt.Errorf("%w: unknown data encoding %d", ErrNotELF, b[5])
	}
	h.order = o
	// e_phnum 0xffff (PN_XNUM) and e_shnum 0 with e_shoff set move the
	// counts into section 0: only the first MaxHeaders entries are looked
	// at either way.
	switch b[4] {
	case 1:
		h.progs = table{off: uint64(o.Uint32(b[28:])), entsize: o.Uint16(b[42:]), num: o.Uint16(b[44:]), size: 32, note: ptNote,
			parse: func(e []byte) (uint32, uint64, uint64) {
				return o.Uint32(e), uint64(o.Uint32(e[4:])), uint64(o.Uint32(e[16:]))
			}}
		h.sects = table{off: uint64(o.Uint32(b[32:])), entsize: o.Uint16(b[46:]), num: o.Uint16(b[48:]), size: 40, note: shtNote,
			parse: func(e []byte) (uint32, uint64, uint64) {
				return o.Uint32(e[4:]), uint64(o.Uint32(e[16:])), uint64(o.Uint32(e[20:]))
			}}
	case 2:
		if len(b) < 64 {
			return h, fmt.Errorf("read ELF header: %w", io.ErrUnexpectedEOF)
		}
		h.progs = table{off: o.Uint64(b[32:]), entsize: o.Uint16(b[54:]), num: o.Uint16(b[56:]), size: 56, note: ptNote,
			parse: func(e []byte) (uint32, uint64, uint64) {
				return o.Uint32(e), o.Uint64(e[8:]), o.Uint64(e[32:])
			}}
		h.sects = table{off: o.Uint64(b[40:]), entsize: o.Uint16(b[58:]), num: o.Uint16(b[60:]), size: 64, note: shtNote,
			parse: func(e []byte) (uint32, uint64, uint64) {
				return o.Uint32(e[4:]), o.Uint64(e[24:]), o.Uint64(e[32:])
			}}
	default:
		return h, fmt.Errorf("%w: unknown class %d", ErrNotELF, b[4])
	}
	if h.sects.off == 0 {
		h.sects.num = 0
	}
	return h, nil
}

// walk reads ELF note records (namesz, descsz, type, name, desc, each
// padded to 4 bytes), stopping at the first that does not fit, and keeps
// the first build ID of each kind.
func walk(b []byte, order binary.ByteOrder, ids *IDs) {
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(order.Uint32(b)), uint64(order.Uint32(b[4:])), order.Uint32(b[8:])
		b = b[12:]
		if namesz > uint64(len(b)) {
			return
		}
		name := string(bytes.TrimRight(b[:namesz], "\x00"))
		b = b[min(align4(namesz), uint64(len(b))):]
		if descsz > uint64(len(b)) {
			return
		}
		desc := b[:descsz]
		b = b[min(align4(descsz), uint64(len(b))):]
		if len(desc) == 0 || len(desc) > maxIDLen {
			continue
		}
		switch {
		case name == "GNU" && typ == ntGNUBuildID && ids.GNU == "":
			ids.GNU = hex.EncodeToString(desc)
		case name == "Go" && typ == ntGoBuildID && ids.Go == "" && plausibleGo(desc):
			ids.Go = string(desc)
		}
	}
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// plausibleGo accepts what the Go toolchain writes: base64url segments
// separated by '/'. '.' is refused so that no ID can name a path's parent
// or an object beside the executable's.
func plausibleGo(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '/', c == '+', c == '=':
		default:
			return false
		}
	}
	return true
}

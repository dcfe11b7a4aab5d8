package buildid

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// note encodes one ELF note record, little-endian.
func note(name string, typ uint32, desc []byte) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	nm := append([]byte(name), 0)
	binary.Write(&b, le, uint32(len(nm)))
	binary.Write(&b, le, uint32(len(desc)))
	binary.Write(&b, le, typ)
	b.Write(nm)
	b.Write(make([]byte, (4-len(nm)%4)%4))
	b.Write(desc)
	b.Write(make([]byte, (4-len(desc)%4)%4))
	return b.Bytes()
}

// prog is one program header of a synthetic ELF64.
type prog struct {
	typ          uint32
	off, filesz  uint64
	data         []byte // placed at off when set
	overrideSize bool   // filesz as given instead of len(data)
}

// image builds a little-endian ELF64 executable with the given program
// headers, phnum claimed (0: len(progs)), and section headers claiming a
// section-name table of shstrSize bytes at shOff.
func image(progs []prog, phnum uint16, shOff, shstrSize uint64) []byte {
	le := binary.LittleEndian
	const phoff = 64
	if phnum == 0 {
		phnum = uint16(len(progs))
	}
	end := uint64(phoff + 56*len(progs))
	for _, p := range progs {
		if p.data != nil {
			end = max(end, p.off+uint64(len(p.data)))
		}
	}
	b := make([]byte, end)
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], uint16(elf.ET_EXEC))
	le.PutUint16(b[18:], uint16(elf.EM_X86_64))
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], phoff)
	le.PutUint64(b[40:], shOff)
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], phnum)
	if shOff != 0 {
		le.PutUint16(b[58:], 64)
		le.PutUint16(b[60:], 2)
		le.PutUint16(b[62:], 1)
	}
	for i, p := range progs {
		ph := b[phoff+56*i:]
		le.PutUint32(ph, p.typ)
		le.PutUint64(ph[8:], p.off)
		size := p.filesz
		if !p.overrideSize {
			size = uint64(len(p.data))
		}
		le.PutUint64(ph[32:], size)
		if p.data != nil {
			copy(b[p.off:], p.data)
		}
	}
	if shOff != 0 {
		// Section 1 is the section-name table the header points at.
		sh := make([]byte, 128)
		le.PutUint32(sh[64+4:], uint32(elf.SHT_STRTAB))
		le.PutUint64(sh[64+24:], shOff+128)
		le.PutUint64(sh[64+32:], shstrSize)
		b = append(b, make([]byte, int(shOff)-len(b))...)
		b = append(b, sh...)
	}
	return b
}

var (
	gnuDesc = []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
	goDesc  = []byte("abcDEF-_12/xyz/uvw/QRS")
	notes   = append(note("GNU", ntGNUBuildID, gnuDesc), note("Go", ntGoBuildID, goDesc)...)
)

func TestReadSynthetic(t *testing.T) {
	img := image([]prog{{typ: 1, off: 0, data: nil}, {typ: ptNote, off: 0x200, data: notes}}, 0, 0, 0)
	ids, err := ReadImage(img)
	if err != nil {
		t.Fatal(err)
	}
	if want := (IDs{GNU: hex.EncodeToString(gnuDesc), Go: string(goDesc)}); ids != want {
		t.Errorf("ReadImage = %+v, want %+v", ids, want)
	}
	// Another owner's note of the same type is not a build ID.
	img = image([]prog{{typ: ptNote, off: 0x200, data: note("XYZ", ntGNUBuildID, gnuDesc)}}, 0, 0, 0)
	if ids, _ := ReadImage(img); ids != (IDs{}) {
		t.Errorf("foreign note read as a build ID: %+v", ids)
	}
}

func TestReadRejects(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("\x7fELF"), bytes.Repeat([]byte{0}, 64), append([]byte("\x7fELF\x03\x01"), make([]byte, 60)...)} {
		if _, err := ReadImage(in); err == nil {
			t.Errorf("ReadImage(% x) accepted", in[:min(len(in), 8)])
		}
	}
	if _, err := ReadImage(append([]byte("\x7fELF\x02\x01"), make([]byte, 60)...)); !errors.Is(err, ErrNotELF) && err != nil {
		t.Errorf("header of no program headers: %v", err)
	}
}

// TestGoIDMustBePlausible: a Go build ID names blob keys and spool files, so
// one that could name a neighbour ("x.sha256", "../y") is not taken.
func TestGoIDMustBePlausible(t *testing.T) {
	for _, bad := range []string{"abc.sha256", "../../etc", "a b", "x\x00y"} {
		img := image([]prog{{typ: ptNote, off: 0x200, data: note("Go", ntGoBuildID, []byte(bad))}}, 0, 0, 0)
		if ids, _ := ReadImage(img); ids.Go != "" {
			t.Errorf("Go build ID %q accepted", bad)
		}
	}
}

// TestMalformedNotes: a note claiming more than its segment holds ends the
// walk without reading past it, and what came before is kept.
func TestMalformedNotes(t *testing.T) {
	bad := append(append([]byte{}, notes[:len(notes)-4]...), 0xff, 0xff, 0xff, 0xff)
	trunc := append(note("GNU", ntGNUBuildID, gnuDesc), 4, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 4, 0, 0, 0, 'G', 'o', 0, 0)
	for _, data := range [][]byte{bad, trunc} {
		img := image([]prog{{typ: ptNote, off: 0x200, data: data}}, 0, 0, 0)
		ids, err := ReadImage(img)
		if err != nil || ids.GNU != hex.EncodeToString(gnuDesc) {
			t.Errorf("ReadImage = %+v, %v; want the GNU ID before the bad note", ids, err)
		}
	}
}

// TestRealExecutables compares Read with debug/elf's sections on real
// programs: this test binary (Go build ID) and system programs (GNU).
func TestRealExecutables(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{self}
	for _, p := range []string{"/usr/bin/ls", "/bin/sh", "/usr/bin/env"} {
		if _, err := os.Stat(p); err == nil {
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		want := sectionIDs(t, p)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Read(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if got != want {
			t.Errorf("%s: Read = %+v, sections say %+v", p, got, want)
		}
		if got == (IDs{}) {
			t.Errorf("%s: no build ID found", p)
		}
	}
}

// sectionIDs is the reference: the build IDs as debug/elf finds them in
// the named sections.
func sectionIDs(t *testing.T, path string) IDs {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids IDs
	if s := f.Section(".note.gnu.build-id"); s != nil {
		b, _ := s.Data()
		walk(b, f.ByteOrder, &ids)
	}
	if s := f.Section(".note.go.buildid"); s != nil {
		b, _ := s.Data()
		walk(b, f.ByteOrder, &ids)
	}
	return ids
}

// countingReader records how many bytes were asked for.
type countingReader struct {
	r     io.ReaderAt
	bytes int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.bytes += int64(len(p))
	return c.r.ReadAt(p, off)
}

// maxRead is the most Read may ask of any file.
const maxRead = 64 + 2*MaxHeaders*64 + MaxNotes*MaxNoteBytes

// TestHostileClaims: what the file claims never becomes reads or memory.
// The sparse file claims a 1 GiB section-name table, which debug/elf
// allocates whole.
func TestHostileClaims(t *testing.T) {
	many := make([]prog, 0, 300)
	for range 300 {
		many = append(many, prog{typ: ptNote, off: 0x10000, filesz: 1 << 62, overrideSize: true})
	}
	cases := map[string][]byte{
		"phnum 65535":      image([]prog{{typ: ptNote, off: 0x200, data: notes}}, 65535, 0, 0),
		"p_filesz 2^62":    image([]prog{{typ: ptNote, off: 0x200, filesz: 1 << 62, overrideSize: true}}, 0, 0, 0),
		"300 huge PT_NOTE": image(many, 0, 0, 0),
	}
	for name, img := range cases {
		cr := &countingReader{r: bytes.NewReader(img)}
		alloc := allocated(func() { Read(cr) })
		if cr.bytes > maxRead {
			t.Errorf("%s: asked for %d bytes, bound is %d", name, cr.bytes, maxRead)
		}
		if alloc > 2*MaxNoteBytes {
			t.Errorf("%s: allocated %d bytes", name, alloc)
		}
	}

	// On disk, sparse: 4 KiB of data claiming a 1 GiB .shstrtab at 1 GiB.
	const gib = 1 << 30
	path := filepath.Join(t.TempDir(), "sparse")
	img := image([]prog{{typ: ptNote, off: 0x200, data: notes}}, 0, 0x1000, gib)
	if err := os.WriteFile(path, img, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(len(img))+gib); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids IDs
	alloc := allocated(func() { ids, err = Read(f) })
	if err != nil || ids.GNU == "" || ids.Go == "" {
		t.Errorf("sparse file: %+v, %v", ids, err)
	}
	if alloc > 2*MaxNoteBytes {
		t.Errorf("sparse file with a 1 GiB .shstrtab: allocated %d bytes", alloc)
	}
}

// allocated is how many bytes fn allocated.
func allocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// BenchmarkRead measures one read of this test binary's build ID, the
// collector's per-crash cost.
func BenchmarkRead(b *testing.B) {
	self, _ := os.Executable()
	f, err := os.Open(self)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Read(f); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(image([]prog{{typ: ptNote, off: 0x200, data: notes}}, 0, 0, 0))
	f.Add(image([]prog{{typ: ptNote, off: 0x200, data: notes}}, 65535, 0x400, 1<<30))
	f.Add(image([]prog{{typ: ptNote, off: 0x40, filesz: 1 << 62, overrideSize: true}}, 0, 0, 0))
	f.Add([]byte("\x7fELF\x01\x02\x01"))
	if self, err := os.Executable(); err == nil {
		if fh, err := os.Open(self); err == nil {
			head := make([]byte, 8192)
			n, _ := io.ReadFull(fh, head)
			fh.Close()
			f.Add(head[:n])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		ids, err := Read(cr)
		if cr.bytes > maxRead {
			t.Fatalf("asked for %d bytes, bound is %d", cr.bytes, maxRead)
		}
		if err != nil && (ids != IDs{}) {
			t.Fatalf("IDs %+v returned with error %v", ids, err)
		}
		if len(ids.GNU) > 2*maxIDLen || len(ids.Go) > maxIDLen || strings.ContainsAny(ids.Go, ". \x00") {
			t.Fatalf("implausible IDs %+v", ids)
		}
		if again, _ := ReadImage(data); again != ids {
			t.Fatalf("not deterministic: %+v then %+v", ids, again)
		}
	})
}

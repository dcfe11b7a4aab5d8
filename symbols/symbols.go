// Package symbols is the symbol store: debug files of stripped programs,
// kept in the blob store under their GNU and Go build IDs with metadata
// next to each, so that the analyzer, dlv, gdb and debuginfod-find can find
// the DWARF a shipped binary no longer carries.
//
// An upload is taken only when the file really carries the build ID it is
// stored under and real DWARF: a debug file that does not belong to its
// build ID would make every report of that build a report of another
// program.
package symbols

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/buildid"
	"github.com/corepipe/corepipe/internal/settings"
)

// DefaultMaxSize bounds an uploaded debug file unless configured
// otherwise: the DWARF of a large Go service is a few hundred MiB.
const DefaultMaxSize = 2 << 30

// maxMeta bounds a metadata object read back from the store.
const maxMeta = 1 << 20

// maxSections bounds the sections a metadata object lists.
const maxSections = 128

// ErrNoDWARF is returned, wrapped, for a file without debug info.
var ErrNoDWARF = errors.New("no DWARF")

// Meta describes a stored debug file.
type Meta struct {
	// Key is where the file is in the blob store.
	Key        string `json:"key"`
	GNUBuildID string `json:"gnu_build_id,omitempty"`
	GoBuildID  string `json:"go_build_id,omitempty"`
	// Name is the uploaded file's base name, as the uploader gave it.
	Name string `json:"name,omitempty"`
	// From debug/buildinfo: empty for an --only-keep-debug file, whose
	// .go.buildinfo holds no bytes.
	Module      string `json:"module,omitempty"`
	Version     string `json:"version,omitempty"`
	VCSRevision string `json:"vcs_revision,omitempty"`
	GoVersion   string `json:"go_version,omitempty"`
	GOARCH      string `json:"goarch,omitempty"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	// Executable is set when the file is a whole program (its code is in
	// it), not only debug sections: debuginfod serves it as /executable.
	Executable bool      `json:"executable,omitempty"`
	Sections   []Section `json:"sections,omitempty"`
	UploadedAt time.Time `json:"uploaded_at"`
}

// Section is where one section's bytes are in the file, for debuginfod's
// /section/NAME.
type Section struct {
	Name   string `json:"name"`
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
}

// IDs names the build IDs of m as the report's lacks spells them.
func (m *Meta) IDs() string {
	var ids []string
	if m.GNUBuildID != "" {
		ids = append(ids, "gnu:"+m.GNUBuildID)
	}
	if m.GoBuildID != "" {
		ids = append(ids, "go:"+m.GoBuildID)
	}
	return strings.Join(ids, " ")
}

// Section returns the section called name, if m lists it.
func (m *Meta) Section(name string) (Section, bool) {
	for _, s := range m.Sections {
		if s.Name == name {
			return s, true
		}
	}
	return Section{}, false
}

var gnuPattern = regexp.MustCompile(`^[0-9a-f]{2,128}$`)

// ValidGNU reports whether id is a GNU build ID in lowercase hex.
func ValidGNU(id string) bool { return len(id)%2 == 0 && gnuPattern.MatchString(id) }

var goPattern = regexp.MustCompile(`^[A-Za-z0-9_\-/+=]{1,256}$`)

// ValidID reports whether id can be a build ID: GNU in lowercase hex, or
// what the Go toolchain writes (base64url segments separated by '/'; never
// '.', so that no ID names a path's parent).
func ValidID(id string) bool { return ValidGNU(id) || goPattern.MatchString(id) }

// Store keeps debug files in a blob store.
type Store struct {
	Blobs corepipe.BlobStore
	// TempDir holds an upload while it is checked ("": os.TempDir()).
	TempDir string
	// MaxSize bounds an upload (0: DefaultMaxSize).
	MaxSize int64
	// Now is the clock of UploadedAt; nil is time.Now.
	Now func() time.Time
}

// Put stores the debug file read from r as the debug info of build ID id
// (a GNU build ID in hex, or a Go build ID), named name. The file must carry
// id and DWARF. Putting a build ID that is already stored keeps the stored
// file: stored is false and meta describes what is there.
func (s *Store) Put(ctx context.Context, id, name string, r io.Reader) (meta *Meta, stored bool, err error) {
	f, err := os.CreateTemp(s.TempDir, "corepipe-upload-")
	if err != nil {
		return nil, false, fmt.Errorf("symbol upload: scratch file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	max := s.MaxSize
	settings.Default(&max, DefaultMaxSize)
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, max+1))
	if err != nil {
		return nil, false, fmt.Errorf("symbol upload: receive: %w", err)
	}
	if n > max {
		return nil, false, fmt.Errorf("%w: debug file is larger than the limit of %d MiB", corepipe.ErrInvalid, max>>20)
	}
	meta, err = Inspect(f, n)
	if err != nil {
		return nil, false, err
	}
	if id != meta.GNUBuildID && id != meta.GoBuildID {
		return nil, false, fmt.Errorf("%w: debug file carries build IDs %s, not %q", corepipe.ErrInvalid, orNone(meta.IDs()), corepipe.Clip(id, 80))
	}
	if old, err := s.Lookup(ctx, id); err == nil {
		return old, false, nil
	} else if !errors.Is(err, corepipe.ErrNotFound) {
		return nil, false, err
	}
	meta.SHA256 = hex.EncodeToString(h.Sum(nil))
	meta.Name = corepipe.SafeName(name)
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	meta.UploadedAt = now().UTC()
	meta.Key = corepipe.DebugInfoGoKey(meta.GoBuildID)
	if meta.GNUBuildID != "" {
		meta.Key = corepipe.DebugInfoKey(meta.GNUBuildID)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, false, fmt.Errorf("symbol upload: %w", err)
	}
	if err := s.Blobs.Put(ctx, meta.Key, f, n); err != nil {
		return nil, false, corepipe.Wrap(err, "store debug file")
	}
	// The metadata is written after the file it names, so that a lookup
	// never finds a file still being written.
	body, err := json.Marshal(meta)
	if err != nil {
		return nil, false, err
	}
	for _, key := range metaKeys(meta) {
		if err := s.Blobs.Put(ctx, key, bytes.NewReader(body), int64(len(body))); err != nil {
			return nil, false, corepipe.Wrap(err, "store debug file metadata")
		}
	}
	return meta, true, nil
}

func metaKeys(m *Meta) []string {
	var keys []string
	if m.GNUBuildID != "" {
		keys = append(keys, corepipe.DebugInfoMetaKey(corepipe.DebugInfoKey(m.GNUBuildID)))
	}
	if m.GoBuildID != "" {
		keys = append(keys, corepipe.DebugInfoMetaKey(corepipe.DebugInfoGoKey(m.GoBuildID)))
	}
	return keys
}

// Lookup returns the metadata of the debug file of build ID id (GNU hex or
// Go), corepipe.ErrNotFound when the store has none.
func (s *Store) Lookup(ctx context.Context, id string) (*Meta, error) {
	key := corepipe.DebugInfoGoKey(id)
	if ValidGNU(id) {
		key = corepipe.DebugInfoKey(id)
	}
	return s.readMeta(ctx, corepipe.DebugInfoMetaKey(key))
}

func (s *Store) readMeta(ctx context.Context, key string) (*Meta, error) {
	rc, err := s.Blobs.Get(ctx, key)
	if errors.Is(err, corepipe.ErrNotFound) {
		return nil, fmt.Errorf("%w: no debug file for this build ID", corepipe.ErrNotFound)
	}
	if err != nil {
		return nil, corepipe.Wrap(err, "read debug file metadata")
	}
	defer rc.Close()
	var m Meta
	if err := json.NewDecoder(io.LimitReader(rc, maxMeta)).Decode(&m); err != nil {
		return nil, fmt.Errorf("debug file metadata %s: %w", key, err)
	}
	if !strings.HasPrefix(m.Key, corepipe.DebugInfoPrefix) || strings.HasSuffix(m.Key, ".json") {
		return nil, fmt.Errorf("debug file metadata %s names key %q outside the symbol store", key, m.Key)
	}
	return &m, nil
}

// Open opens the debug file m describes.
func (s *Store) Open(ctx context.Context, m *Meta) (io.ReadCloser, error) {
	rc, err := s.Blobs.Get(ctx, m.Key)
	if errors.Is(err, corepipe.ErrNotFound) {
		return nil, fmt.Errorf("%w: the debug file of %s is listed but not stored", corepipe.ErrNotFound, m.IDs())
	}
	if err != nil {
		return nil, corepipe.Wrap(err, "open debug file")
	}
	return rc, nil
}

// List calls fn with every stored debug file's metadata, once each, at most
// limit of them (0: no limit).
func (s *Store) List(ctx context.Context, limit int, fn func(*Meta) error) error {
	n := 0
	errStop := errors.New("stop")
	err := s.Blobs.List(ctx, corepipe.DebugInfoPrefix, func(key string) error {
		if !strings.HasSuffix(key, ".json") {
			return nil
		}
		m, err := s.readMeta(ctx, key)
		if err != nil {
			return err
		}
		// A Go build ID's metadata beside a GNU one names the same file.
		if corepipe.DebugInfoMetaKey(m.Key) != key {
			return nil
		}
		if limit > 0 && n >= limit {
			return errStop
		}
		n++
		return fn(m)
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// Inspect checks that the ELF file f of size bytes carries a build ID and
// DWARF, and describes it. Nothing it allocates depends on what the file
// claims beyond its real size: every section is checked to lie inside the
// file before anything of it is read, and of the DWARF only the first unit
// header is read.
func Inspect(f io.ReaderAt, size int64) (*Meta, error) {
	ids, err := buildid.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", corepipe.ErrInvalid, err)
	}
	if ids.GNU == "" && ids.Go == "" {
		return nil, fmt.Errorf("%w: the file carries no build ID (GNU or Go), so no crash could be matched to it", corepipe.ErrInvalid)
	}
	if err := checkSectionTable(f, size); err != nil {
		return nil, err
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed ELF: %v", corepipe.ErrInvalid, err)
	}
	m := &Meta{GNUBuildID: ids.GNU, GoBuildID: ids.Go, Size: size}
	var info *elf.Section
	for _, s := range ef.Sections {
		if s.Type == elf.SHT_NOBITS || s.Type == elf.SHT_NULL {
			continue
		}
		if s.Offset > uint64(size) || s.FileSize > uint64(size)-s.Offset {
			return nil, fmt.Errorf("%w: section %s claims %d bytes at offset %d, past the end of the %d-byte file", corepipe.ErrInvalid, corepipe.Clip(s.Name, 80), s.FileSize, s.Offset, size)
		}
		if s.Name == ".debug_info" {
			info = s
		}
		if s.Name == ".text" && s.FileSize > 0 {
			m.Executable = true
		}
		if len(m.Sections) < maxSections && s.FileSize > 0 {
			m.Sections = append(m.Sections, Section{Name: s.Name, Offset: s.Offset, Size: s.FileSize})
		}
	}
	if info == nil {
		return nil, fmt.Errorf("%w: %w: the file has no .debug_info (built with -ldflags=-s -w, or stripped)", corepipe.ErrInvalid, ErrNoDWARF)
	}
	if err := checkUnitHeader(info, ef.ByteOrder); err != nil {
		return nil, err
	}
	if bi, err := buildinfo.Read(io.NewSectionReader(f, 0, size)); err == nil {
		m.Module, m.Version, m.GoVersion = bi.Main.Path, bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				m.VCSRevision = s.Value
			case "GOARCH":
				m.GOARCH = s.Value
			}
		}
	}
	return m, nil
}

// HasDWARF reports whether the ELF file at path carries real DWARF: a
// crash of it needs nothing from the symbol store.
func HasDWARF(path string) (bool, error) {
	fh, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return false, err
	}
	_, err = Inspect(fh, st.Size())
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNoDWARF):
		return false, nil
	default:
		return false, err
	}
}

// BuiltStripped reports whether the Go program at path was linked with -s
// or -w, as its build settings record: such a build has other build IDs
// than the same build without them, so its debug info can never be found
// for the binary shipped from the unstripped one.
func BuiltStripped(path string) bool {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key != "-ldflags" {
			continue
		}
		for _, f := range strings.Fields(s.Value) {
			if f == "-s" || f == "-w" || f == "-s=true" || f == "-w=true" {
				return true
			}
		}
	}
	return false
}

// checkSectionTable refuses a section header table that does not lie
// inside the file, before debug/elf reads it.
func checkSectionTable(f io.ReaderAt, size int64) error {
	var h [64]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return fmt.Errorf("%w: truncated ELF header", corepipe.ErrInvalid)
	}
	var order binary.ByteOrder = binary.LittleEndian
	if elf.Data(h[elf.EI_DATA]) == elf.ELFDATA2MSB {
		order = binary.BigEndian
	}
	var off, entsize, num uint64
	switch elf.Class(h[elf.EI_CLASS]) {
	case elf.ELFCLASS64:
		off, entsize, num = order.Uint64(h[40:]), uint64(order.Uint16(h[58:])), uint64(order.Uint16(h[60:]))
	case elf.ELFCLASS32:
		off, entsize, num = uint64(order.Uint32(h[32:])), uint64(order.Uint16(h[46:])), uint64(order.Uint16(h[48:]))
	default:
		return fmt.Errorf("%w: unknown ELF class", corepipe.ErrInvalid)
	}
	if num == 0 {
		return fmt.Errorf("%w: %w: the file has no sections", corepipe.ErrInvalid, ErrNoDWARF)
	}
	if off > uint64(size) || num*entsize > uint64(size)-off {
		return fmt.Errorf("%w: the section header table (%d entries at offset %d) lies past the end of the %d-byte file", corepipe.ErrInvalid, num, off, size)
	}
	return nil
}

// checkUnitHeader reads the first compilation unit's header of
// .debug_info: its length must fit the section and its version be one of
// DWARF 2 to 5.
func checkUnitHeader(s *elf.Section, order binary.ByteOrder) error {
	var b [14]byte
	n, err := io.ReadFull(s.Open(), b[:])
	if err != nil && n < 6 {
		return fmt.Errorf("%w: .debug_info is unreadable or empty", corepipe.ErrInvalid)
	}
	length, rest := uint64(order.Uint32(b[:])), b[4:n]
	if length == 0xffffffff {
		if n < 14 {
			return fmt.Errorf("%w: .debug_info has a truncated unit header", corepipe.ErrInvalid)
		}
		length, rest = order.Uint64(b[4:]), b[12:n]
	}
	if len(rest) < 2 {
		return fmt.Errorf("%w: .debug_info has a truncated unit header", corepipe.ErrInvalid)
	}
	version := order.Uint16(rest)
	if version < 2 || version > 5 || length < 2 || length > s.Size {
		return fmt.Errorf("%w: .debug_info does not start with a DWARF unit (version %d, length %d in a %d-byte section)", corepipe.ErrInvalid, version, length, s.Size)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

package collector

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// ELF note types of the two build IDs.
const (
	noteGNUBuildID = 3 // NT_GNU_BUILD_ID, name "GNU"
	noteGoBuildID  = 4 // Go's ELF_NOTE_GOBUILDID_TAG, name "Go"
	// maxNotes bounds what is read of one note segment or section.
	maxNotes = 64 << 10
)

// buildIDs reads the GNU and Go build IDs from the ELF notes of r. The
// program headers are read first: they are what the loader used, and they
// survive stripping that drops the section headers.
func buildIDs(r io.ReaderAt) (gnu, goID string, err error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", "", fmt.Errorf("read ELF: %w", err)
	}
	defer f.Close()
	var readers []io.Reader
	for _, p := range f.Progs {
		if p.Type == elf.PT_NOTE {
			readers = append(readers, p.Open())
		}
	}
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOTE {
			readers = append(readers, s.Open())
		}
	}
	for _, nr := range readers {
		b, err := io.ReadAll(io.LimitReader(nr, maxNotes))
		if err != nil {
			continue
		}
		g, gid := parseNotes(b, f.ByteOrder)
		if gnu == "" {
			gnu = g
		}
		if goID == "" {
			goID = gid
		}
		if gnu != "" && goID != "" {
			break
		}
	}
	return gnu, goID, nil
}

// parseNotes walks ELF note records (namesz, descsz, type, name, desc, each
// 4-aligned), stopping at the first malformed one.
func parseNotes(b []byte, order binary.ByteOrder) (gnu, goID string) {
	align := func(n uint32) int { return int((uint64(n) + 3) &^ 3) }
	for len(b) >= 12 {
		namesz, descsz, typ := order.Uint32(b), order.Uint32(b[4:]), order.Uint32(b[8:])
		b = b[12:]
		if align(namesz) > len(b) {
			return
		}
		name := string(bytes.TrimRight(b[:namesz], "\x00"))
		b = b[align(namesz):]
		if align(descsz) > len(b) {
			return
		}
		desc := b[:descsz]
		b = b[align(descsz):]
		switch {
		case name == "GNU" && typ == noteGNUBuildID && gnu == "":
			gnu = hex.EncodeToString(desc)
		case name == "Go" && typ == noteGoBuildID && goID == "":
			goID = string(desc)
		}
	}
	return
}

// copyExecutable streams at most limit bytes of the held executable into
// dst, hashing them, and syncs dst. It reads from offset 0 whatever was read
// from the handle before.
func copyExecutable(dst *os.File, exe *os.File, limit int64) (size int64, sum string, err error) {
	h := sha256.New()
	size, err = io.CopyBuffer(io.MultiWriter(dst, h), io.NewSectionReader(exe, 0, limit), make([]byte, copyBuffer))
	if err != nil {
		return size, "", fmt.Errorf("copy executable: %w", err)
	}
	if err := dst.Sync(); err != nil {
		return size, "", fmt.Errorf("copy executable: %w", err)
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

// hashExecutable returns the size and sha256 of the held executable.
func hashExecutable(exe *os.File) (int64, string, error) {
	h := sha256.New()
	size, err := io.CopyBuffer(h, io.NewSectionReader(exe, 0, 1<<62), make([]byte, copyBuffer))
	if err != nil {
		return size, "", fmt.Errorf("hash executable: %w", err)
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

package collector

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// Caps on reading /proc/<pid>/maps: the kernel allows 65530 mappings by
// default (vm.max_map_count), and a line is at most a path plus 73 bytes.
const (
	maxMapsLines    = 1 << 18
	maxMapsLine     = 8 << 10
	maxMappedFiles  = 1 << 16
	mapsFieldsAhead = 5 // address, perms, offset, dev, inode
)

// mappedFile identifies a file by device and inode, as maps prints them.
type mappedFile struct {
	dev   string
	inode uint64
}

// parseMaps summarises a maps file. exe is the executable's path as the exe
// link reads, exeInode its inode (0: unknown); the executable's mappings are
// the ones with either: the kernel escapes a newline in a path as \012 in
// maps but not in the link, and the inode is what a hostile name cannot
// imitate. The held executable handle already gives the file
// itself, so this keeps only what the handle cannot tell: where the file
// was loaded, and how much else was mapped.
func parseMaps(r io.Reader, exe string, exeInode uint64) (*corepipe.Mappings, []string) {
	m := &corepipe.Mappings{}
	var notes []string
	files := make(map[mappedFile]struct{})
	br := bufio.NewReaderSize(r, maxMapsLine)
	var exeBase uint64
	found := false
	for lines := 0; ; lines++ {
		if lines == maxMapsLines {
			notes = append(notes, fmt.Sprintf("maps read up to %d mappings", maxMapsLines))
			break
		}
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line this long is no line the kernel writes: skip it whole.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if len(line) > 0 {
			start, end, f, path, ok := parseMapsLine(string(bytes.TrimSuffix(line, []byte("\n"))))
			if ok && f.inode != 0 {
				m.FileBytes += int64(end - start)
				if _, seen := files[f]; !seen && len(files) < maxMappedFiles {
					files[f] = struct{}{}
				}
				if path == exe || exeInode != 0 && f.inode == exeInode {
					if !found || start < exeBase {
						exeBase, found = start, true
					}
				}
			}
		}
		if err != nil {
			if err != io.EOF {
				notes = append(notes, fmt.Sprintf("maps: %v", err))
			}
			break
		}
	}
	m.Files = len(files)
	if found {
		m.ExeBase = "0x" + strconv.FormatUint(exeBase, 16)
	}
	return m, notes
}

// parseMapsLine reads "start-end perms offset dev inode   path". The path
// is the rest of the line: it may hold spaces.
func parseMapsLine(line string) (start, end uint64, f mappedFile, path string, ok bool) {
	var fields [mapsFieldsAhead]string
	rest := line
	for i := range fields {
		rest = strings.TrimLeft(rest, " ")
		j := strings.IndexByte(rest, ' ')
		if j < 0 {
			if i < len(fields)-1 {
				return 0, 0, f, "", false
			}
			j = len(rest)
		}
		fields[i], rest = rest[:j], rest[j:]
	}
	lo, hi, cut := strings.Cut(fields[0], "-")
	if !cut {
		return 0, 0, f, "", false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseUint(lo, 16, 64)
	end, err2 = strconv.ParseUint(hi, 16, 64)
	f.inode, err3 = strconv.ParseUint(fields[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || end < start {
		return 0, 0, f, "", false
	}
	f.dev = fields[3]
	return start, end, f, strings.TrimLeft(rest, " "), true
}

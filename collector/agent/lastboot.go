package agent

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/kernlog"
	"github.com/corepipe/corepipe/netconsole"
)

// MaxPanicLog bounds what is read of one log a previous boot left: its
// newest end, where the panic is, whatever size a record claims.
const MaxPanicLog = 1 << 20

// maxLastBootLogs bounds how many logs are held at once: archives that
// keep every dump (kdump-tools keeps all by default) cost the newest few
// MiB, not one per dump ever made. The older ones were recorded by earlier
// starts.
const maxLastBootLogs = 16

// maxInflate bounds the bytes a compressed pstore record may expand to
// while its newest MaxPanicLog bytes are kept: a record is KiBs, a crafted
// one must not spin the agent.
const maxInflate = 64 << 20

// KernelRecorder stores a kernel console log and publishes its crash;
// netconsole.Recorder is one, and the only one: a panic read back after
// the reboot becomes the same crash its netconsole capture did.
type KernelRecorder interface {
	Record(ctx context.Context, c *netconsole.Capture) (*corepipe.Crash, error)
}

// LastBoot reads the kernel panic the node's previous boot left behind and
// records it: in pstore (the kernel's own dump of its log, in parts), in
// systemd-pstore's archive of those, and in kdump's dmesg. A pstore record
// is removed once its crash is stored and published — pstore's room is a
// few records — while the archives stay as their owners keep them: the
// crash ID comes from the panic itself and a recorded crash is found by it,
// so restarts of the agent record nothing twice.
type LastBoot struct {
	// Pstore is where pstore is mounted (/sys/fs/pstore); SystemdPstore
	// systemd-pstore's archive (/var/lib/systemd/pstore); Kdump kdump's
	// dump directory (/var/crash). Empty: not read.
	Pstore, SystemdPstore, Kdump string
	// Node is this node's name, the crash's node.
	Node     string
	Recorder KernelRecorder
	// MaxBackoff bounds the wait between retries while storage or the
	// queue is down.
	MaxBackoff time.Duration
	Logger     *slog.Logger
}

// PanicLog is one kernel log a previous boot left, as read from its files.
type PanicLog struct {
	Source string // corepipe.SourcePstore or SourceKdump
	// Files are what it was read from, the newest part first.
	Files []string
	// At is when the kernel wrote it, from the files' times.
	At  time.Time
	Log []byte
	// removable is set for pstore's own records, deleted once recorded.
	removable bool
}

// Run records every previous boot's panic found, retrying while storage
// or the queue is down, and returns when each is recorded or ctx is done.
func (b *LastBoot) Run(ctx context.Context) error {
	log := b.logger()
	logs := b.Find()
	backoff := time.Duration(0)
	for len(logs) > 0 {
		l := logs[0]
		c := &netconsole.Capture{Source: l.Source, Sender: l.Files[0], Node: b.Node, Log: l.Log, PanicAt: l.At, LastAt: l.At, Ended: true}
		cr, err := b.Recorder.Record(ctx, c)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = nextBackoff(backoff, max(b.MaxBackoff, time.Second))
			wait := jitter(backoff)
			log.Warn("previous boot's kernel panic not recorded yet", "source", l.Source, "file", l.Files[0], "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		backoff = 0
		logs = logs[1:]
		log.Info("previous boot's kernel panic recorded", corepipe.LogKeyCrash, cr.ID, "source", l.Source, "files", len(l.Files))
		if !l.removable {
			continue
		}
		for _, f := range l.Files {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				log.Warn("recorded pstore record not removed: the next start finds it recorded", corepipe.LogKeyCrash, cr.ID, "file", f, "err", err)
			}
		}
	}
	return nil
}

// Find lists the panic logs in the configured places, oldest first; a
// place that cannot be read is logged and skipped.
func (b *LastBoot) Find() []PanicLog {
	log := b.logger()
	var out []PanicLog
	add := func(where string, logs []PanicLog, err error) {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("previous boot's kernel logs not read", "dir", where, "err", err)
		}
		out = collectPanics(out, logs...)
	}
	if b.Pstore != "" {
		logs, err := pstoreLogs(b.Pstore, true)
		add(b.Pstore, logs, err)
	}
	if b.SystemdPstore != "" {
		logs, err := systemdPstoreLogs(b.SystemdPstore)
		add(b.SystemdPstore, logs, err)
	}
	if b.Kdump != "" {
		logs, err := kdumpLogs(b.Kdump)
		add(b.Kdump, logs, err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

func (b *LastBoot) logger() *slog.Logger {
	if b.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Logger
}

// pstoreRecord is one dmesg record file of pstore.
type pstoreRecord struct {
	path   string
	header kernlog.PstorePart
	at     time.Time
	text   []byte // without its header and the backend's notices
}

// partGap is how far apart in time the parts of one dump may be written.
const partGap = time.Minute

// pstoreLogs reads the dmesg records in dir ("dmesg-ramoops-0",
// "dmesg-efi-…", ".enc.z" when the kernel could not decompress one) and
// joins the parts of each dump, highest part first.
func pstoreLogs(dir string, removable bool) ([]PanicLog, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var recs []pstoreRecord
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), "dmesg-") {
			continue
		}
		r, err := readPstoreRecord(filepath.Join(dir, e.Name()))
		if err != nil {
			// One record the kernel could not write or decompress
			// whole costs only itself.
			errs = append(errs, err)
			continue
		}
		recs = append(recs, r)
	}
	// A dump's parts share their header's reason and count and were
	// written together; another boot's dump may carry the same header.
	sort.Slice(recs, func(i, j int) bool {
		a, b := recs[i].header, recs[j].header
		switch {
		case a.Reason != b.Reason:
			return a.Reason < b.Reason
		case a.Count != b.Count:
			return a.Count < b.Count
		}
		return recs[i].at.Before(recs[j].at)
	})
	var out []PanicLog
	var group []pstoreRecord
	flush := func() {
		if len(group) > 0 {
			out = append(out, joinParts(group, removable))
		}
		group = nil
	}
	for _, r := range recs {
		if len(group) > 0 {
			first := group[0]
			same := r.header.Reason == first.header.Reason && r.header.Count == first.header.Count &&
				r.header.Part > 0 && r.at.Sub(first.at) <= partGap && !hasPart(group, r.header.Part)
			if !same {
				flush()
			}
		}
		group = append(group, r)
	}
	flush()
	return out, errors.Join(errs...)
}

func hasPart(group []pstoreRecord, part int) bool {
	for _, r := range group {
		if r.header.Part == part {
			return true
		}
	}
	return false
}

// joinParts is one dump from its parts: the highest part is the oldest
// end of the log.
func joinParts(group []pstoreRecord, removable bool) PanicLog {
	sort.Slice(group, func(i, j int) bool { return group[i].header.Part > group[j].header.Part })
	l := PanicLog{Source: corepipe.SourcePstore, removable: removable}
	var b bytes.Buffer
	for _, r := range group {
		b.Write(r.text)
		if n := b.Len(); n > 0 && b.Bytes()[n-1] != '\n' {
			b.WriteByte('\n')
		}
		if r.at.After(l.At) {
			l.At = r.at
		}
	}
	// The newest part first: it holds the panic, and names the log.
	for i := len(group) - 1; i >= 0; i-- {
		l.Files = append(l.Files, group[i].path)
	}
	l.Log = b.Bytes()
	if len(l.Log) > MaxPanicLog {
		l.Log = dropFirstLine(l.Log[len(l.Log)-MaxPanicLog:])
	}
	return l
}

// readPstoreRecord reads one record, its newest MaxPanicLog bytes, and
// strips its part header and what the backend appended.
func readPstoreRecord(path string) (pstoreRecord, error) {
	r := pstoreRecord{path: path}
	f, st, err := openLog(path)
	if err != nil {
		return r, err
	}
	defer f.Close()
	r.at = st.ModTime()
	var data []byte
	if strings.HasSuffix(path, ".enc.z") {
		data, err = inflateTail(f)
	} else {
		data, err = readTail(f, st.Size())
	}
	if err != nil {
		return r, fmt.Errorf("pstore record %s: %w", path, err)
	}
	first, rest, _ := bytes.Cut(data, []byte("\n"))
	if h, ok := kernlog.ParsePstoreHeader(string(first)); ok {
		r.header, data = h, rest
	}
	r.text = stripNotices(data)
	return r, nil
}

// stripNotices drops the lines a pstore backend adds to a record, and any
// part headers within (systemd-pstore's dmesg.txt joins whole records).
// ramoops's notice comes after an empty line, which goes too.
func stripNotices(data []byte) []byte {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), MaxPanicLog+1)
	empty := false
	for sc.Scan() {
		line := sc.Text()
		if _, ok := kernlog.ParsePstoreHeader(line); ok || kernlog.IsPstoreNotice(line) {
			empty = false
			continue
		}
		if empty {
			b.WriteByte('\n')
		}
		if empty = line == ""; !empty {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// readTail reads the last MaxPanicLog bytes of a file of size bytes (a
// pseudo-file that reports 0 is read to its end, keeping the same): the
// first line whole, for a pstore part's header, then the tail from a line
// boundary.
func readTail(f *os.File, size int64) ([]byte, error) {
	if size <= MaxPanicLog {
		return tailOf(f)
	}
	head, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return nil, err
	}
	head, _, _ = bytes.Cut(head, []byte("\n"))
	if _, err := f.Seek(size-MaxPanicLog, io.SeekStart); err != nil {
		return nil, err
	}
	tail, err := io.ReadAll(io.LimitReader(f, MaxPanicLog))
	if err != nil {
		return nil, err
	}
	return append(append(head, '\n'), dropFirstLine(tail)...), nil
}

// tailOf reads r to its end and keeps its last MaxPanicLog bytes.
func tailOf(r io.Reader) ([]byte, error) {
	buf := make([]byte, 0, 64<<10)
	chunk := make([]byte, 32<<10)
	cut := false
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if len(buf) > 2*MaxPanicLog {
			buf = append(buf[:0], buf[len(buf)-MaxPanicLog:]...)
			cut = true
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(buf) > MaxPanicLog {
		buf, cut = buf[len(buf)-MaxPanicLog:], true
	}
	if cut {
		buf = dropFirstLine(buf)
	}
	return buf, nil
}

// inflateTail decompresses a record the kernel left compressed (raw
// deflate, or zlib on older kernels), keeping the newest MaxPanicLog bytes
// of at most maxInflate.
func inflateTail(f *os.File) ([]byte, error) {
	head, err := io.ReadAll(io.LimitReader(f, MaxPanicLog))
	if err != nil {
		return nil, err
	}
	var zr io.Reader = flate.NewReader(bytes.NewReader(head))
	if z, err := zlib.NewReader(bytes.NewReader(head)); err == nil {
		zr = z
	}
	data, err := tailOf(io.LimitReader(zr, maxInflate))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	return data, nil
}

// openLog opens a log file without following a link: a link planted in a
// host directory must not make the agent publish some other file.
func openLog(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open kernel log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("kernel log %s: %w", path, err)
	}
	return f, st, nil
}

// dropFirstLine drops what precedes the first line boundary of a cut log.
func dropFirstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// systemdPstoreLogs reads systemd-pstore's archive: the records it moved
// out of pstore, at its top (ramoops and other backends it does not know)
// or in <record id>/[<count>/] directories (efi, erst), each directory
// with the parts joined as dmesg.txt too, which is read only where the
// parts are gone.
func systemdPstoreLogs(dir string) ([]PanicLog, error) {
	var out []PanicLog
	var errs []error
	var walk func(d string, depth int)
	walk = func(d string, depth int) {
		logs, err := pstoreLogs(d, false)
		if err != nil {
			errs = append(errs, err)
		}
		out = collectPanics(out, logs...)
		entries, err := os.ReadDir(d)
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, e := range entries {
			if e.Name() == "dmesg.txt" && e.Type().IsRegular() && len(logs) == 0 {
				l, err := fileLog(filepath.Join(d, e.Name()), corepipe.SourcePstore)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				out = collectPanics(out, l)
			}
			if e.IsDir() && depth < 2 {
				walk(filepath.Join(d, e.Name()), depth+1)
			}
		}
	}
	walk(dir, 0)
	return out, errors.Join(errs...)
}

// kdumpLogs reads kdump's dmesg files: kdump-tools's
// <dir>/<YYYYMMDDHHMM>/dmesg.<YYYYMMDDHHMM> and kexec-tools's
// <dir>/<host>-<date>/vmcore-dmesg.txt.
func kdumpLogs(dir string) ([]PanicLog, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []PanicLog
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		files, err := os.ReadDir(sub)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			n := f.Name()
			if !f.Type().IsRegular() || !(strings.HasPrefix(n, "dmesg.") || n == "vmcore-dmesg.txt") {
				continue
			}
			l, err := fileLog(filepath.Join(sub, n), corepipe.SourceKdump)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = collectPanics(out, l)
		}
	}
	return out, errors.Join(errs...)
}

// collectPanics appends the logs that hold a panic to out — an Oops the kernel
// survived, a shutdown's dump, stay as they are — and drops the oldest
// past maxLastBootLogs.
func collectPanics(out []PanicLog, logs ...PanicLog) []PanicLog {
	for _, l := range logs {
		if _, err := kernlog.Parse(bytes.NewReader(l.Log)); err == nil {
			out = append(out, l)
		}
	}
	if len(out) <= maxLastBootLogs {
		return out
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	clear(out[maxLastBootLogs:])
	return out[:maxLastBootLogs]
}

// fileLog reads one whole log file, its newest MaxPanicLog bytes, with
// any pstore part headers and notices in it dropped.
func fileLog(path, source string) (PanicLog, error) {
	l := PanicLog{Source: source, Files: []string{path}}
	f, st, err := openLog(path)
	if err != nil {
		return l, err
	}
	defer f.Close()
	l.At = st.ModTime()
	data, err := readTail(f, st.Size())
	if err != nil {
		return l, fmt.Errorf("kernel log %s: %w", path, err)
	}
	l.Log = stripNotices(data)
	return l, nil
}

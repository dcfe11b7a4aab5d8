package collector

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
)

// Caps on what is read from /proc: every file there is controlled by the
// crashing process or sized by it, so each read is bounded.
const (
	maxCmdlineBytes = 64 << 10
	maxCmdlineArgs  = 1024
	maxStatusBytes  = 1 << 20 // Groups: can list 65536 groups
	maxSmallFile    = 64 << 10
	maxEnvironBytes = 4 << 20
	maxEnvEntry     = 64 << 10
)

// procDir is an open /proc/<pid>. Every file is opened relative to it, so
// once the directory is known to be the crashing process's (see checkPidFD)
// no later read can land on a process that reused the PID: a dead task's
// directory returns errors, never another task's data.
type procDir struct {
	fd   int
	path string
}

func openProcDir(procRoot string, pid int) (*procDir, error) {
	path := filepath.Join(procRoot, strconv.Itoa(pid))
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &procDir{fd: fd, path: path}, nil
}

func (p *procDir) Close() error { return unix.Close(p.fd) }

// open opens a file of the process without following symlinks: nothing
// under /proc/<pid> that is read as data is a link.
func (p *procDir) open(name string) (*os.File, error) {
	fd, err := unix.Openat(p.fd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(p.path, name), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(p.path, name)), nil
}

// openExe opens the executable through the exe magic link. The handle stays
// valid after the process is gone and even when the file was deleted or
// replaced on disk, which is why it is taken before the core is drained.
func (p *procDir) openExe() (*os.File, string, error) {
	name := filepath.Join(p.path, "exe")
	fd, err := unix.Openat(p.fd, "exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", &os.PathError{Op: "open", Path: name, Err: err}
	}
	buf := make([]byte, unix.PathMax)
	target := ""
	if n, err := unix.Readlinkat(p.fd, "exe", buf); err == nil {
		target = string(buf[:n])
	}
	return os.NewFile(uintptr(fd), name), target, nil
}

// read returns at most limit bytes of name and whether there was more.
func (p *procDir) read(name string, limit int) ([]byte, bool, error) {
	f, err := p.open(name)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if len(b) > limit {
		return b[:limit], true, nil
	}
	return b, false, nil
}

// checkPidFD reads the pidfd the kernel passed (%F) and reports the PID it
// refers to: the crashing process's while it has not been reaped, -1 after.
// Checked after /proc/<pid> is open, a match proves the open directory is
// the crashing process and not a later one that reused its PID.
func checkPidFD(procRoot string, fd int) (int, error) {
	path := filepath.Join(procRoot, "self", "fdinfo", strconv.Itoa(fd))
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd %d: %w", fd, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSmallFile))
	if err != nil {
		return 0, fmt.Errorf("pidfd %d: %w", fd, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			pid, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, fmt.Errorf("pidfd %d: Pid %q: %w", fd, strings.TrimSpace(v), err)
			}
			return pid, nil
		}
	}
	return 0, fmt.Errorf("pidfd %d: %s has no Pid line; fd %d is not a pidfd", fd, path, fd)
}

// parseCmdline splits the NUL-separated argv, keeping at most
// maxCmdlineArgs. The arguments are data: they may hold slashes, newlines or
// invalid UTF-8 and are never used as paths.
func parseCmdline(b []byte) (args []string, capped bool) {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, false
	}
	for part := range bytes.SplitSeq(b, []byte{0}) {
		if len(args) == maxCmdlineArgs {
			return args, true
		}
		args = append(args, string(part))
	}
	return args, false
}

// status is what corepipe keeps of /proc/<pid>/status.
type status struct {
	Threads int
	RSS     int64 // bytes
	Peak    int64 // bytes
	UID     int   // real; -1 when absent
	GID     int   // real; -1 when absent
	NSPID   int   // innermost namespace; 0 when absent
}

func parseStatus(b []byte) (status, error) {
	st := status{UID: -1, GID: -1}
	var errs []error
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		var err error
		switch key {
		case "Threads":
			st.Threads, err = strconv.Atoi(fields[0])
		case "VmRSS":
			st.RSS, err = parseKB(fields)
		case "VmPeak":
			st.Peak, err = parseKB(fields)
		case "Uid":
			st.UID, err = strconv.Atoi(fields[0])
		case "Gid":
			st.GID, err = strconv.Atoi(fields[0])
		case "NSpid":
			st.NSPID, err = strconv.Atoi(fields[len(fields)-1])
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("status %s: %w", key, err))
		}
	}
	return st, errors.Join(errs...)
}

// parseKB reads a "1234 kB" status value into bytes.
func parseKB(fields []string) (int64, error) {
	n, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return 0, err
	}
	if len(fields) > 1 && fields[1] != "kB" {
		return 0, fmt.Errorf("unit %q, want kB", fields[1])
	}
	return n << 10, nil
}

// parseLimits returns the soft limits of /proc/<pid>/limits by their /proc
// name ("Max core file size"). The file is a table aligned on its header, and
// names contain spaces, so columns are cut where the header puts them.
func parseLimits(b []byte) (map[string]string, error) {
	lines := strings.Split(string(b), "\n")
	header := lines[0]
	soft := strings.Index(header, "Soft Limit")
	hard := strings.Index(header, "Hard Limit")
	if soft <= 0 || hard <= soft {
		return nil, fmt.Errorf("limits: unexpected header %q", corepipe.Clip(header, 80))
	}
	limits := make(map[string]string)
	for _, line := range lines[1:] {
		if len(line) <= soft {
			continue
		}
		name := strings.TrimSpace(line[:soft])
		val := strings.TrimSpace(line[soft:min(hard, len(line))])
		if name != "" && val != "" {
			limits[name] = val
		}
	}
	return limits, nil
}

// filterEnviron streams the NUL-separated environment and keeps the values
// of allowed names only: everything else may be a secret and never leaves
// the node. It reads in bounded chunks so a huge environment costs no memory.
func filterEnviron(r io.Reader, allow []string) (map[string]string, error) {
	allowed := make(map[string]bool, len(allow))
	for _, name := range allow {
		allowed[name] = true
	}
	env := make(map[string]string)
	br := bufio.NewReaderSize(r, maxEnvEntry)
	skipping := false // inside an entry longer than the buffer
	for {
		entry, err := br.ReadSlice(0)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			skipping = true
			continue
		case skipping:
			skipping = false
		case len(entry) > 0:
			name, val, ok := strings.Cut(string(bytes.TrimSuffix(entry, []byte{0})), "=")
			if ok && allowed[name] {
				env[name] = val
			}
		}
		if err == io.EOF {
			return env, nil
		}
		if err != nil {
			return env, fmt.Errorf("environ: %w", err)
		}
	}
}

// gatherProcess fills c from /proc/<pid> and returns the held executable
// handle (nil when it could not be opened). Everything it cannot read
// becomes a note: a crash with half its metadata is still worth keeping.
func gatherProcess(c *corepipe.Crash, procRoot string, a kernelArgs, allow []string) *os.File {
	if a.PID <= 0 {
		c.Notes = append(c.Notes, "no usable pid from the kernel: /proc not read")
		return nil
	}
	p, err := openProcDir(procRoot, a.PID)
	if err != nil {
		c.Notes = append(c.Notes, fmt.Sprintf("/proc not read: %v", err))
		return nil
	}
	defer p.Close()

	if a.PidFD < 0 {
		c.Notes = append(c.Notes, "kernel passed no pidfd (%F needs Linux 6.16+): /proc/<pid> trusted without a PID reuse check")
	} else {
		pid, err := checkPidFD(procRoot, a.PidFD)
		switch {
		case err != nil:
			c.Notes = append(c.Notes, fmt.Sprintf("PID reuse check failed, /proc/<pid> trusted without it: %v", err))
		case pid != a.PID:
			c.Notes = append(c.Notes, fmt.Sprintf("pidfd refers to pid %d, not %d (exited or reused): /proc data and executable not collected", pid, a.PID))
			return nil
		}
	}

	exe, target, err := p.openExe()
	if err != nil {
		c.Notes = append(c.Notes, fmt.Sprintf("executable not opened: %v", err))
	}
	c.Process.Exe = target
	c.Executable.Path = target

	if b, more, err := p.read("cmdline", maxCmdlineBytes); err != nil {
		c.Notes = append(c.Notes, err.Error())
	} else {
		args, capped := parseCmdline(b)
		c.Process.Cmdline = args
		if more || capped {
			c.Notes = append(c.Notes, fmt.Sprintf("cmdline cut to %d bytes / %d arguments", maxCmdlineBytes, maxCmdlineArgs))
		}
	}
	if b, _, err := p.read("comm", maxSmallFile); err != nil {
		c.Notes = append(c.Notes, err.Error())
	} else {
		c.Process.Comm = strings.TrimSuffix(string(b), "\n")
	}
	if b, _, err := p.read("status", maxStatusBytes); err != nil {
		c.Notes = append(c.Notes, err.Error())
	} else {
		st, err := parseStatus(b)
		if err != nil {
			c.Notes = append(c.Notes, err.Error())
		}
		c.Process.Threads, c.Process.RSS, c.Process.Peak = st.Threads, st.RSS, st.Peak
		// The kernel's arguments win; status fills what they lacked.
		if c.Process.NSPID == 0 {
			c.Process.NSPID = st.NSPID
		}
		if c.Process.UID < 0 {
			c.Process.UID = st.UID
		}
		if c.Process.GID < 0 {
			c.Process.GID = st.GID
		}
	}
	if b, more, err := p.read("cgroup", maxSmallFile); err != nil {
		c.Notes = append(c.Notes, err.Error())
	} else {
		c.Cgroup, c.Container = parseCgroup(b)
		if more {
			c.Notes = append(c.Notes, fmt.Sprintf("cgroup cut to %d bytes", maxSmallFile))
		}
	}
	if b, _, err := p.read("limits", maxSmallFile); err != nil {
		c.Notes = append(c.Notes, err.Error())
	} else if c.Limits, err = parseLimits(b); err != nil {
		c.Notes = append(c.Notes, err.Error())
	}
	if f, err := p.open("maps"); err != nil {
		c.Notes = append(c.Notes, err.Error())
	} else {
		var notes []string
		ino, nlink := inode(exe)
		c.Mappings, notes = parseMaps(f, target, ino)
		f.Close()
		// The link's " (deleted)" suffix could be part of a real name; a
		// file with no links left is deleted or replaced for sure.
		c.Mappings.ExeDeleted = exe != nil && nlink == 0
		c.Notes = append(c.Notes, notes...)
	}
	if f, err := p.open("environ"); err != nil {
		c.Notes = append(c.Notes, err.Error())
	} else {
		env, err := filterEnviron(io.LimitReader(f, maxEnvironBytes), allow)
		f.Close()
		if err != nil {
			c.Notes = append(c.Notes, err.Error())
		}
		if len(env) > 0 {
			c.Environ = env
		}
	}
	return exe
}

// inode returns the inode number and link count of f; 0 and 1 when unknown.
func inode(f *os.File) (uint64, uint64) {
	if f == nil {
		return 0, 1
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, 1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino, st.Nlink
	}
	return 0, 1
}

// Package collector is corepipe's core_pattern pipe handler: it writes the
// spool whose format is package spool. The kernel starts one collector per
// crash, as root, while the crashing process waits: it reads what it needs
// from /proc/<pid>, streams the core from stdin through zstd into a spool
// entry, captures the executable, and commits the entry with a rename so the
// node agent (which reads the spool through spool.Spool) never sees half of
// one. It has no network code: everything leaves the node through the agent.
package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/settings"
)

// DefaultEnvAllowlist are the environment variables kept from the crashed
// process: the Go runtime's knobs, which the diagnosis needs. Every other
// variable may hold a secret and is never read into the manifest.
var DefaultEnvAllowlist = []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG", "GOTRACEBACK"}

// Config is how one collector run behaves.
type Config struct {
	// SpoolDir is where entries are written; created 0700 when missing,
	// refused when it is a symlink.
	SpoolDir string
	// ProcRoot is where procfs is mounted: "/proc" unless a test points it
	// at a fixture.
	ProcRoot string
	// CgroupRoot is where the cgroup v2 hierarchy is mounted:
	// "/sys/fs/cgroup" unless a test points it at a fixture.
	CgroupRoot string
	// Hostname is the node's name, recorded as the crash's node.
	Hostname string
	// Now gives the capture time the crash ID is built from; time.Now when nil.
	Now func() time.Time
	// MaxCoreSize caps the raw bytes of core kept (0: no cap). A longer core
	// is cut there and marked truncated.
	MaxCoreSize int64
	// SpoolMaxUse caps the bytes the whole spool may hold and SpoolKeepFree
	// is what must stay free on its filesystem (0: no limit). A core that
	// does not fit is cut to what does; with no room at all it is dropped
	// and only the manifest is kept.
	SpoolMaxUse   int64
	SpoolKeepFree int64
	// EnvAllowlist names the environment variables kept; nil means
	// DefaultEnvAllowlist.
	EnvAllowlist []string
	// IgnoreRlimitCore keeps cores of processes whose RLIMIT_CORE says not
	// to. Production honours the limit; a developer machine, where the
	// shell's default soft limit of 0 is rarely a decision, may not.
	IgnoreRlimitCore bool
	// RateLimit keeps the cores of only the first RateLimit crashes of each
	// executable per RateWindow (DefaultRateWindow when 0); later crashes
	// keep their manifest. 0: no limit. The count is shared through the
	// spool by every collector process.
	RateLimit  int
	RateWindow time.Duration
	// MaxExecutableSize is the largest executable hashed or copied
	// (DefaultMaxExecutableSize when 0, no limit when negative).
	MaxExecutableSize int64
	// MaxCollectors bounds the collectors storing a core at once on the
	// node (DefaultMaxCollectors when 0); one that finds no slot free
	// within SlotWait (DefaultSlotWait when 0) keeps the manifest only.
	MaxCollectors int
	SlotWait      time.Duration
	// Logger receives one line per decision; silent when nil.
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/sys/fs/cgroup"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.EnvAllowlist == nil {
		cfg.EnvAllowlist = DefaultEnvAllowlist
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	settings.Default(&cfg.RateWindow, DefaultRateWindow)
	if cfg.MaxExecutableSize == 0 {
		cfg.MaxExecutableSize = DefaultMaxExecutableSize
	}
	settings.Default(&cfg.MaxCollectors, DefaultMaxCollectors)
	settings.Default(&cfg.SlotWait, DefaultSlotWait)
	return cfg
}

// Run captures one crash. args are the kernel's positional arguments
// (%P %i %I %s %t %c %u %g %d %p [%F]) and stdin is the core as the kernel
// streams it.
//
// The order is forced by the kernel: /proc/<pid> and the executable handle
// are taken first, because the process is reaped once stdin is drained.
// When Run stops wanting the core (RLIMIT_CORE 0, a size limit, a deadline)
// it closes stdin if it is an io.Closer instead of draining it: the kernel
// then aborts the dump and the dying process, which waits for it, is
// released at once rather than after writing gigabytes nobody keeps.
//
// Run returns an error only when no entry could be committed. Everything
// short of that (missing /proc files, a dropped core, an executable that
// could not be copied) is a note in the returned manifest.
func Run(ctx context.Context, cfg Config, args []string, stdin io.Reader) (*corepipe.Crash, error) {
	start := time.Now()
	cfg = cfg.withDefaults()
	defer release(stdin)

	now := cfg.Now()
	a, problems := parseArgs(args)
	c := &corepipe.Crash{
		Schema:     corepipe.ManifestSchema,
		ID:         corepipe.NewID(now),
		CapturedAt: now.UTC(),
		Node:       cfg.Hostname,
		Process: corepipe.Process{
			PID: a.PID, NSPID: a.NSPID, TID: a.TID, UID: a.UID, GID: a.GID,
			RlimitCore: a.rlimitString(), Dumpable: a.Dump,
		},
		Notes: problems,
	}
	if a.Signal > 0 {
		c.Signal = corepipe.Signal{Number: a.Signal, Name: corepipe.SignalName(a.Signal)}
	}
	if a.Dump == 2 {
		c.Notes = append(c.Notes, "dumped under suid_dumpable=2: the process was not normally dumpable (setuid, or changed credentials); its core may hold memory its user could not read")
	}
	log := cfg.Logger.With(corepipe.LogKeyCrash, c.ID, "pid", a.PID)

	exe := gatherProcess(c, cfg.ProcRoot, a, cfg.EnvAllowlist)
	if exe != nil {
		defer exe.Close()
	}
	gatherCgroupLimits(c, cfg.CgroupRoot)
	exeID := identify(exe, c)

	root, err := openSpoolRoot(cfg.SpoolDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	tmp := c.ID + spool.TmpSuffix
	if err := root.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create entry: %w", err)
	}
	// Should the collector give up past its deadline (Abandon), nothing
	// is left that the agent must wait 30 minutes to clean.
	forget := track(cfg.SpoolDir, tmp)
	defer forget()
	q := newQuota(cfg, root, tmp)

	if admitCore(cfg, root, &a, c, q, exeID) {
		slot, err := takeSlot(root, cfg.MaxCollectors, cfg.SlotWait)
		switch {
		case errors.Is(err, errSlotsBusy):
			// Waiting longer would hold one of the kernel's
			// core_pipe_limit slots, and the kernel skips every dump
			// past them without a trace: give this one up instead.
			release(stdin)
			c.Core.Dropped = spool.DroppedBusy
			c.Notes = append(c.Notes, fmt.Sprintf("core dropped: %v; the kernel's stream was closed so its dump slot is free, the manifest is kept", err))
		case err != nil:
			// Like the rate limit: a bound that cannot be checked does
			// not cost the crash its core.
			c.Notes = append(c.Notes, fmt.Sprintf("collector slots not checked, core kept: %v", err))
			captureCore(ctx, cfg, root, tmp, a, stdin, c, q)
		default:
			defer slot.Close()
			captureCore(ctx, cfg, root, tmp, a, stdin, c, q)
		}
	}
	release(stdin)
	captureExecutable(ctx, cfg, root, tmp, exe, c, q)

	c.Timings.CaptureMS = time.Since(start).Milliseconds()
	if err := commit(root, tmp, c, q, log); err != nil {
		if rerr := root.RemoveAll(tmp); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	log.Info("crash captured", "comm", c.Process.Comm, "signal", c.Signal.Name,
		"core_size", c.Core.Size, "stored_size", c.Core.StoredSize, "dropped", c.Core.Dropped,
		"truncated", c.Core.Truncated, "capture_ms", c.Timings.CaptureMS, "notes", len(c.Notes))
	return c, nil
}

// release closes the kernel's pipe, which aborts whatever is left of the
// dump. Closing twice is harmless.
func release(stdin io.Reader) {
	if cl, ok := stdin.(io.Closer); ok {
		cl.Close()
	}
}

// identify reads the executable's build IDs, before the core, and returns
// the identity of the held file ("" without one). It reads the ELF headers
// and notes only, within package buildid's fixed bounds.
func identify(exe *os.File, c *corepipe.Crash) string {
	if exe == nil {
		return ""
	}
	gnu, goID, err := buildIDs(exe)
	if err != nil {
		c.Notes = append(c.Notes, fmt.Sprintf("executable build IDs not read: %v", err))
	}
	c.Executable.BuildID, c.Executable.GoBuildID = gnu, goID
	var st unix.Stat_t
	if unix.Fstat(int(exe.Fd()), &st) != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// rateKey is the identity crashes are counted under: the user and the
// executable file the kernel ran (device and inode of the held handle),
// with its build ID, else its path, else the process name. A build ID is
// whatever the crashing program's notes say, so alone it would let any
// program claim another's and spend its crashes for it: with the uid and
// the file, a squatter only limits itself.
func rateKey(c *corepipe.Crash, exeID string) string {
	who := fmt.Sprintf("uid:%d file:%s ", c.Process.UID, exeID)
	switch {
	case c.Executable.BuildID != "" || c.Executable.GoBuildID != "":
		return who + "build:" + c.Executable.ContentID()
	case c.Executable.Path != "":
		return who + "path:" + c.Executable.Path
	default:
		return who + "comm:" + c.Process.Comm
	}
}

// manifestSlack is room reserved beyond the manifest as first encoded, for
// what is learnt while capturing (sizes, hashes, notes).
const manifestSlack = 16 << 10

// manifestSize is the size of c as commit writes it.
func manifestSize(c *corepipe.Crash) int64 {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return spool.MaxManifestSize
	}
	return int64(len(b)) + 1
}

// admitCore takes the decisions about the core that need no core, so that
// a core nobody keeps is never read: the kernel's stream is closed unread
// and the dying process released at once. It reports whether the core is
// wanted; when not, c.Core.Dropped and c.Notes say why.
func admitCore(cfg Config, root *os.Root, a *kernelArgs, c *corepipe.Crash, q *quota, exeID string) bool {
	if cfg.IgnoreRlimitCore && a.HasRlimit && a.Rlimit != math.MaxUint64 {
		c.Notes = append(c.Notes, fmt.Sprintf("RLIMIT_CORE %d ignored by configuration", a.Rlimit))
		a.HasRlimit = false
	}
	if q != nil && !q.take(manifestSize(c)+manifestSlack) {
		c.Core.Dropped = spool.DroppedSpoolFull
		c.Notes = append(c.Notes, fmt.Sprintf("spool full (%s): core dropped; the manifest is written anyway, as the record of the crash", q.why))
		return false
	}
	if a.HasRlimit && a.Rlimit == 0 {
		c.Core.Dropped = spool.DroppedRlimit
		c.Notes = append(c.Notes, "RLIMIT_CORE is 0: core not kept; the kernel's stream was closed unread so the process could exit")
		return false
	}
	if cfg.RateLimit > 0 {
		ok, st, err := admit(root, rateKey(c, exeID), cfg.RateLimit, cfg.RateWindow, cfg.Now())
		switch {
		case err != nil:
			c.Notes = append(c.Notes, fmt.Sprintf("rate limit not checked, core kept: %v", err))
		case !ok:
			c.Core.Dropped = spool.DroppedRateLimited
			c.Notes = append(c.Notes, fmt.Sprintf("rate limited: crash %d of this executable in the window that began %s; only the first %d per %v keep their core, this one keeps its manifest only",
				st.Kept+st.Limited, time.Unix(0, st.Start).UTC().Format(time.RFC3339), cfg.RateLimit, cfg.RateWindow))
			return false
		}
	}
	return true
}

// captureCore streams the admitted core into the entry, recording the
// outcome in c.Core and c.Notes.
func captureCore(ctx context.Context, cfg Config, root *os.Root, tmp string, a kernelArgs, stdin io.Reader, c *corepipe.Crash, q *quota) {
	limit, reason := int64(0), ""
	if cfg.MaxCoreSize > 0 {
		limit, reason = cfg.MaxCoreSize, fmt.Sprintf("max core size %d", cfg.MaxCoreSize)
	}
	// Pipes ignore RLIMIT_CORE in the kernel; honour it as a file core would.
	if a.HasRlimit && a.Rlimit != math.MaxUint64 && a.Rlimit <= math.MaxInt64 && (limit == 0 || int64(a.Rlimit) < limit) {
		limit, reason = int64(a.Rlimit), fmt.Sprintf("RLIMIT_CORE %d", a.Rlimit)
	}

	name := path.Join(tmp, spool.CoreFile)
	f, err := createExcl(root, name)
	if err != nil {
		c.Core.Dropped = spool.DroppedWrite
		c.Notes = append(c.Notes, fmt.Sprintf("core dropped: %v", err))
		return
	}
	// streamCore lets the process go once it has read the core; the
	// disk and the hash are waited for after that.
	res, err := streamCore(ctx, f, stdin, limit, q)
	if err == nil {
		err = settleCore(f, &res)
	}
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			c.Core.StoredSize = fi.Size()
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = errWrite{cerr}
	}
	if err == nil && res.SpoolFull && res.Size == 0 {
		root.Remove(name)
		c.Core = corepipe.CoreArtifact{Dropped: spool.DroppedSpoolFull}
		c.Notes = append(c.Notes, res.Why+": core dropped, manifest kept")
		return
	}
	if err != nil {
		// A zstd stream cut by a failed write cannot be read back reliably.
		root.Remove(name)
		c.Core = corepipe.CoreArtifact{Dropped: spool.DroppedWrite}
		c.Notes = append(c.Notes, fmt.Sprintf("core dropped after %d bytes: %v", res.Size, err))
		return
	}
	c.Core.Size, c.Core.SHA256, c.Core.Truncated = res.Size, res.SHA256, res.Truncated
	switch {
	case res.AtLimit:
		c.Notes = append(c.Notes, fmt.Sprintf("core longer than %d bytes (%s): kept the first %d, the rest of the dump was aborted", limit, reason, limit))
	case res.Truncated:
		c.Notes = append(c.Notes, res.Why+"; kept what was read, the rest of the dump was aborted")
	}
}

// captureExecutable records the executable's identity and copies it into
// the entry, unless there is no core for it to serve or the agent has
// already stored the same content. Its cost is bounded whatever the file
// claims: nothing is read for a dropped core, files over the size limit or
// made of holes are refused (see layoutOf), reads stop at the deadline,
// holes are never written out, and a copy that fails is removed at once.
func captureExecutable(ctx context.Context, cfg Config, root *os.Root, tmp string, exe *os.File, c *corepipe.Crash, q *quota) {
	if exe == nil {
		return
	}
	x := &c.Executable
	switch {
	case c.Core.Dropped != "":
		c.Notes = append(c.Notes, "no core: executable identified by its build ID only, not hashed or copied")
		return
	case ctx.Err() != nil:
		c.Notes = append(c.Notes, "capture deadline reached: executable not copied")
		return
	}
	l, err := layoutOf(exe, cfg.MaxExecutableSize)
	x.Size = l.size
	if err != nil {
		c.Notes = append(c.Notes, err.Error())
		return
	}
	// A marker under the build ID says something with that ID is stored;
	// whether it is this executable only the content can tell, since the
	// crashing program chose its ID. Without a build ID the hash is the ID.
	id := x.ContentID()
	marked, isMarked := markerOf(root, id)
	idKey := identityKey(exe)
	if id == "" || isMarked {
		if x.SHA256 = cachedHash(root, idKey); x.SHA256 == "" {
			if x.SHA256, err = hashExecutable(ctx, exe, l); err != nil {
				c.Notes = append(c.Notes, err.Error())
				return
			}
			// Only an identity unchanged by the read names what was read.
			if identityKey(exe) == idKey {
				cacheHash(root, idKey, x.SHA256)
			}
		}
		switch {
		case isMarked && marked.SHA256 == x.SHA256:
			x.Found = true
			c.Notes = append(c.Notes, fmt.Sprintf("executable %s already stored with the same content: not copied", id))
			return
		case id != "" && hasMarker(root, x.SHA256):
			x.Found = true
			c.Notes = append(c.Notes, fmt.Sprintf("executable %s is stored with other content; this one is already stored as sha256 %s: not copied", id, x.SHA256))
			return
		case id == "" && hasMarker(root, x.SHA256):
			x.Found = true
			c.Notes = append(c.Notes, fmt.Sprintf("executable sha256 %s already stored: not copied", x.SHA256))
			return
		}
	}
	if q != nil && !q.take(l.size) {
		c.Notes = append(c.Notes, fmt.Sprintf("spool full (%s): executable of %d bytes not copied", q.why, l.size))
		return
	}
	name := path.Join(tmp, spool.ExecutableFile)
	f, err := createExcl(root, name)
	if err != nil {
		c.Notes = append(c.Notes, fmt.Sprintf("executable not copied: %v", err))
		return
	}
	size, sum, err := copyExecutable(ctx, f, exe, l)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("copy executable: %w", cerr)
	}
	if err != nil {
		root.Remove(name)
		c.Notes = append(c.Notes, err.Error()+"; the partial copy was removed")
		return
	}
	if x.SHA256 != "" && x.SHA256 != sum {
		c.Notes = append(c.Notes, "executable changed while it was read: the copy is of what was read last")
	}
	x.Size, x.SHA256, x.Found = size, sum, true
	if identityKey(exe) == idKey {
		cacheHash(root, idKey, sum)
	}
	if l.holes > 0 {
		c.Notes = append(c.Notes, fmt.Sprintf("executable has %d bytes of holes: copied without writing them", l.holes))
	}
}

// markerOf is spool.Spool.ExecutableStored through the collector's root.
func markerOf(root *os.Root, contentID string) (spool.StoredExe, bool) {
	if contentID == "" {
		return spool.StoredExe{}, false
	}
	f, err := root.OpenFile(path.Join(spool.ExecutablesDir, corepipe.SafeName(contentID)), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return spool.StoredExe{}, false
	}
	defer f.Close()
	return spool.ReadMarker(f)
}

// hasMarker reports whether the executable of this sha256 is stored under
// it: a sha256 is a content ID no program can choose.
func hasMarker(root *os.Root, sum string) bool {
	m, ok := markerOf(root, sum)
	return ok && (m.SHA256 == "" || m.SHA256 == sum)
}

// commit writes the manifest, makes the entry durable and publishes it by
// renaming <id>.tmp to <id>: the agent only ever sees complete entries. It
// fails only when the entry was not published.
func commit(root *os.Root, tmp string, c *corepipe.Crash, q *quota, log *slog.Logger) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	f, err := createExcl(root, path.Join(tmp, spool.ManifestFile))
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := q.release(); err != nil {
		log.Warn("spool reservation kept in the committed entry", "err", err)
	}
	if err := syncDir(root, tmp); err != nil {
		return fmt.Errorf("sync spool entry: %w", err)
	}
	err = q.renaming(func() error { return root.Rename(tmp, c.ID) })
	if err != nil {
		return fmt.Errorf("commit spool entry: %w", err)
	}
	// Published: a failed sync now only risks losing the rename in a power
	// cut, and the entry is complete either way.
	if err := syncDir(root, "."); err != nil {
		log.Warn("spool not synced after commit", "err", err)
	}
	return nil
}

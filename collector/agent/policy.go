package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/internal/hostfile"
	"github.com/corepipe/corepipe/collector/spool"
)

// Quota admits the first cores per decision key and window across the
// fleet (queue/nats's CoreQuota).
type Quota interface {
	Admit(ctx context.Context, key string) (bool, error)
}

// NodeAnalyser analyses a spooled core on the node (analyzer.Local): the
// report without goroutines, and the file of the whole report, positioned
// at its start, which the caller closes.
type NodeAnalyser interface {
	Analyse(ctx context.Context, c *corepipe.Crash, corePath, exePath string) (*corepipe.Report, *os.File, error)
}

// Republisher queues a crash again once its location changed: its core
// was stored on request, or went early.
type Republisher interface {
	RepublishCrash(ctx context.Context, c *corepipe.Crash, why string) error
}

// CorePolicy is the fleet's "report first, core by policy": a core leaves
// the node only when the quota admits it; the others stay in the spool
// for TTL, where a debugger can request them, and their crash ships with
// the report made on the node.
type CorePolicy struct {
	Quota Quota
	// Rule says the quota in words, for the reports of kept cores
	// ("2 cores per signature and build per 1h").
	Rule string
	// Analyser, when set, analyses each core before the decision, whose
	// key is then the signature and build ID. Nil decides by build ID and
	// signal, known before any analysis, and leaves the analysis of the
	// cores shipped to the central analyzer.
	Analyser NodeAnalyser
	// TTL is how long a kept core stays (0: DefaultNodeCoreTTL).
	TTL time.Duration
	// AdmitTimeout bounds the wait for the quota (0: 5s); past it, or when
	// NATS fails, the core is shipped (see Decide).
	AdmitTimeout time.Duration
	// Queue republishes a crash whose core was stored on request.
	Queue Republisher
}

// DefaultNodeCoreTTL is how long a core the policy did not ship stays on
// its node.
const DefaultNodeCoreTTL = 24 * time.Hour

func (p *CorePolicy) ttl() time.Duration {
	if p.TTL <= 0 {
		return DefaultNodeCoreTTL
	}
	return p.TTL
}

// decision is what the policy decided for one core.
type decision struct {
	ship bool
	// report is the node's report of a kept core, nil without one.
	report *os.File
	reason string
}

func (d *decision) close() {
	if d.report != nil {
		d.report.Close()
	}
}

// decide applies the policy to the core at corePath. It never loses the
// crash: an analysis that fails, or a quota that does not answer, ships
// the core, which costs bytes, not reports.
func (a *Agent) decide(ctx context.Context, e spool.Entry, c *corepipe.Crash, corePath string) (*decision, error) {
	p := a.cfg.Policy
	log := a.log.With(corepipe.LogKeyCrash, c.ID)
	key := "build:" + c.Executable.ContentID() + "/sig:" + c.Signal.Name
	d := &decision{ship: true}
	if p.Analyser != nil {
		exe, cleanup, err := a.localExecutable(ctx, e, c)
		if err != nil {
			return nil, err
		}
		if exe == "" {
			log.Warn("no executable to analyse the core with on the node: core shipped")
			a.m.decisions.WithLabelValues("no_executable").Inc()
			cleanup()
			return d, nil
		}
		// One analysis at a time on a node, whatever else the agent does.
		a.analysing.Lock()
		start := time.Now()
		r, f, err := p.Analyser.Analyse(ctx, c, corePath, exe)
		took := time.Since(start)
		a.analysing.Unlock()
		cleanup()
		a.m.nodeAnalysis.Observe(took.Seconds())
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			log.Warn("analysis on the node failed: core shipped for central analysis", "err", err, "analysis_ms", took.Milliseconds())
			c.Notes = append(c.Notes, "the analysis on the node failed ("+err.Error()+"): the core was shipped for central analysis")
			a.m.decisions.WithLabelValues("analysis_failed").Inc()
			return d, nil
		}
		log.Info("core analysed on the node", "signature", r.Signature, "analysis_ms", took.Milliseconds())
		c.Timings.AnalysisMS = took.Milliseconds()
		d.report = f
		if r.Signature != "" {
			key = r.Signature + "@" + c.Executable.ContentID()
		}
	}
	actx, cancel := context.WithTimeout(ctx, cmp(p.AdmitTimeout, 5*time.Second))
	ok, err := p.Quota.Admit(actx, key)
	cancel()
	switch {
	case err != nil:
		if ctx.Err() != nil {
			d.close()
			return nil, ctx.Err()
		}
		// A fleet without its counters ships every core, as before the
		// policy: bytes, never crashes, are what an outage costs.
		log.Warn("core quota unavailable: core shipped", "err", err, "key", key)
		c.Notes = append(c.Notes, "the fleet's core quota did not answer ("+err.Error()+"): the core was shipped")
		a.m.decisions.WithLabelValues("quota_unavailable").Inc()
		d.close()
		d.report = nil
	case ok:
		a.m.decisions.WithLabelValues("shipped").Inc()
		// The central analyzer analyses a shipped core with the symbol
		// store: the node's report is not needed.
		d.close()
		d.report = nil
	default:
		a.m.decisions.WithLabelValues("kept").Inc()
		d.ship = false
		d.reason = "over the quota of " + p.Rule
	}
	return d, nil
}

func cmp(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// localExecutable is the crashed executable for an analysis on the node:
// the spool's copy, or, when the collector found it stored and did not
// copy it, the blob store's, fetched into a temporary file.
func (a *Agent) localExecutable(ctx context.Context, e spool.Entry, c *corepipe.Crash) (string, func(), error) {
	if p := e.ExecutablePath(); p != "" {
		return p, func() {}, nil
	}
	if c.Executable.Key == "" {
		return "", func() {}, nil
	}
	rc, err := a.cfg.Blobs.Get(ctx, c.Executable.Key)
	if errors.Is(err, corepipe.ErrNotFound) {
		return "", func() {}, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("fetch executable for the analysis on the node: %w", err)
	}
	defer rc.Close()
	f, err := os.CreateTemp("", "corepipe-exe-"+c.ID+"-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.Remove(f.Name()) }
	_, err = f.ReadFrom(rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("fetch executable for the analysis on the node: %w", err)
	}
	return f.Name(), cleanup, nil
}

// keep records that c's core stays on the node: its node report stored,
// its location said.
func (a *Agent) keep(ctx context.Context, c *corepipe.Crash, d *decision) error {
	if d.report != nil {
		key := corepipe.NodeReportKey(c)
		st, err := d.report.Stat()
		if err != nil {
			return err
		}
		if err := a.cfg.Blobs.Put(ctx, key, d.report, st.Size()); err != nil {
			return fmt.Errorf("store node report: %w", err)
		}
		c.NodeReport = key
	}
	c.Core.Location = &corepipe.CoreLocation{
		State:  corepipe.CoreOnNode,
		Node:   c.Node,
		Until:  time.Now().Add(a.cfg.Policy.ttl()).UTC().Truncate(time.Second),
		Reason: d.reason,
	}
	return nil
}

// writeManifest replaces the manifest of a kept entry with the crash as
// shipped, which a later upload starts from.
func writeManifest(e spool.Entry, c *corepipe.Crash) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	name := filepath.Join(e.Dir, spool.ManifestFile)
	err = hostfile.Replace(name, name+spool.TmpSuffix, 0o600, true, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("kept entry %s: manifest: %w", e.ID, err)
	}
	return nil
}

// UploadKept stores the kept core of crash id, as a debugger asked, and
// queues the crash again for its analysis; the report then says the core
// is stored. A core no longer on the node is corepipe.ErrNotFound.
func (a *Agent) UploadKept(ctx context.Context, id string) error {
	a.keptMu.Lock()
	defer a.keptMu.Unlock()
	e, ok := a.cfg.Spool.KeptEntry(id)
	if !ok {
		return fmt.Errorf("crash %s: %w: its core is no longer on this node", id, corepipe.ErrNotFound)
	}
	c, err := e.Manifest()
	if err != nil {
		return err
	}
	p := e.CorePath()
	if p == "" {
		return fmt.Errorf("crash %s: %w: its kept entry has no core", id, corepipe.ErrNotFound)
	}
	key := corepipe.CoreKey(c)
	if err := a.putFile(ctx, key, p); err != nil {
		return fmt.Errorf("crash %s: store requested core: %w", id, err)
	}
	c.Core.Key = key
	c.Core.Location = &corepipe.CoreLocation{State: corepipe.CoreStored}
	// A new analysis of the same crash: its report replaces the node's.
	c.Revision++
	c.Notes = append(c.Notes, "the core, kept on the node by the fleet's core policy, was uploaded on request")
	if err := a.cfg.Policy.Queue.RepublishCrash(ctx, c, "core"); err != nil {
		return fmt.Errorf("crash %s: queue requested core: %w", id, err)
	}
	manifest, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := a.cfg.Blobs.Put(ctx, corepipe.ManifestKey(c), bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		return fmt.Errorf("crash %s: store manifest: %w", id, err)
	}
	if err := e.Remove(); err != nil {
		return err
	}
	a.m.requested.Inc()
	a.log.Info("kept core uploaded on request", corepipe.LogKeyCrash, id, "stored_bytes", c.Core.StoredSize)
	return nil
}

// expireKept removes the kept cores whose time is up, and the oldest ones
// beyond the share of the spool's limits kept cores may take: half of
// max_use, and nothing of keep_free. New crashes come first.
func (a *Agent) expireKept(ctx context.Context, now time.Time) {
	if a.cfg.Policy == nil {
		return
	}
	a.keptMu.Lock()
	defer a.keptMu.Unlock()
	kept, err := a.cfg.Spool.Kept()
	if err != nil {
		a.log.Warn("list kept cores", "err", err)
		return
	}
	settings, _ := spool.LoadSettings(a.cfg.Spool.Dir)
	var total int64
	sizes := make([]int64, len(kept))
	for i, e := range kept {
		sizes[i] = e.Size()
		total += sizes[i]
	}
	for i, e := range kept {
		c, err := e.Manifest()
		expired := err != nil || c.Core.Location == nil || now.After(c.Core.Location.Until)
		over := settings.MaxUse > 0 && total > settings.MaxUse/2
		if !over && settings.KeepFree > 0 {
			var st unix.Statfs_t
			if unix.Statfs(a.cfg.Spool.Dir, &st) == nil && int64(st.Bavail)*int64(st.Bsize) < settings.KeepFree {
				over = true
			}
		}
		if !expired && !over {
			continue
		}
		if err := e.Remove(); err != nil {
			a.log.Warn("remove kept core", corepipe.LogKeyCrash, e.ID, "err", err)
			continue
		}
		total -= sizes[i]
		a.m.keptExpired.Inc()
		if expired || c == nil {
			a.log.Info("kept core expired", corepipe.LogKeyCrash, e.ID)
			continue
		}
		// Gone before its time: say so, or its report would promise a
		// core until then.
		c.Core.Location.State = corepipe.CoreExpired
		c.Core.Location.Reason = "removed early to keep the spool within its limits"
		c.Revision++
		if err := a.cfg.Policy.Queue.RepublishCrash(ctx, c, "expired"); err != nil {
			a.log.Warn("tell of a kept core removed early", corepipe.LogKeyCrash, e.ID, "err", err)
		}
		a.log.Info("kept core removed early for spool space", corepipe.LogKeyCrash, e.ID)
	}
}

// keptLocks are the agent's locks around its kept cores and its node
// analysis.
type keptLocks struct {
	keptMu    sync.Mutex
	analysing sync.Mutex
}

package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	natsq "github.com/corepipe/corepipe/queue/nats"
	"github.com/corepipe/corepipe/retention"
	"github.com/corepipe/corepipe/sqlite"
)

// retentionFlags are the API's retention flags (issue 16), shared by
// `corepipe api` and `corepipe dev`.
type retentionFlags struct {
	cores, reports days
	keep           int
	interval       time.Duration
}

func retentionFlagsOf(fset *pflag.FlagSet) *retentionFlags {
	f := &retentionFlags{}
	fset.Var(&f.cores, "retain-cores", "delete stored cores older than `D` (e.g. 90d, 36h; 0 keeps them forever), except each group's --keep-exemplars first and latest; the reports say \"core expired\"")
	fset.Var(&f.reports, "retain-reports", "delete reports, with every blob of their crash, older than `D` (e.g. 365d; 0 keeps them forever)")
	fset.IntVar(&f.keep, "keep-exemplars", retention.DefaultKeep, "with --retain-cores: how many of each group's first and of its latest stored cores stay whatever their age")
	fset.DurationVar(&f.interval, "retention-interval", retention.DefaultInterval, "time between retention passes; one API replica of the cluster sweeps, by a lease in NATS")
	return f
}

// days is a duration flag that also takes whole days ("90d").
type days time.Duration

func (d *days) String() string {
	if *d == 0 {
		return "0"
	}
	if v := time.Duration(*d); v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return time.Duration(*d).String()
}

func (d *days) Set(s string) error {
	var v time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		i, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return fmt.Errorf("want whole days (90d) or a duration (36h)")
		}
		v = time.Duration(i) * 24 * time.Hour
	} else {
		var err error
		if v, err = time.ParseDuration(s); err != nil || v < 0 {
			return fmt.Errorf("want whole days (90d), a duration (36h) or 0")
		}
	}
	*d = days(v)
	return nil
}

func (d *days) Type() string { return "duration" }

// sweeperPart runs the retention sweeper, nil when nothing expires. Every
// API replica runs one; the lease in NATS lets one sweep at a time.
func sweeperPart(log *slog.Logger, idx *sqlite.Index, blobs corepipe.BlobStore, q reportsQueue, f *retentionFlags) (func(context.Context) error, error) {
	if f == nil || (f.cores == 0 && f.reports == 0) {
		return nil, nil
	}
	// An hour at least: the reports stream drops, as a duplicate, an expired
	// core's announcement made within minutes of its report.
	for name, d := range map[string]days{"--retain-cores": f.cores, "--retain-reports": f.reports} {
		if d != 0 && time.Duration(d) < time.Hour {
			return nil, fmt.Errorf("%s %v: want 0 (forever) or an hour or more", name, time.Duration(d))
		}
	}
	if f.interval < time.Second {
		return nil, fmt.Errorf("--retention-interval %v: want a second or more", f.interval)
	}
	del, ok := blobs.(corepipe.BlobDeleter)
	if !ok {
		return nil, fmt.Errorf("--retain-cores and --retain-reports need a blob store that deletes")
	}
	cfg := retention.Config{
		Blobs: del, Index: idx,
		Cores: time.Duration(f.cores), Reports: time.Duration(f.reports),
		Keep: f.keep, Interval: f.interval,
		Log: log.With("part", "retention"),
	}
	var lease *natsq.Lease
	if nq, ok := q.(*natsq.Queue); ok {
		host, _ := os.Hostname()
		var err error
		// A holder that stops renewing loses the lease after three passes'
		// time: a dead replica's job passes on, a slow pass keeps it.
		if lease, err = nq.Lease("retention", fmt.Sprintf("%s-%d-%s", host, os.Getpid(), rand.Text()[:8]), 3*f.interval); err != nil {
			return nil, err
		}
		cfg.Lease, cfg.Publish = lease, nq
	}
	sw, err := retention.New(cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		err := sw.Run(ctx)
		if lease != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if rerr := lease.Release(ctx); rerr != nil {
				log.Warn("retention: release the lease", "err", rerr)
			}
		}
		return err
	}, nil
}

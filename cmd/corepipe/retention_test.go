package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/pipetest"
	"github.com/corepipe/corepipe/sqlite"
)

func TestRetentionFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want time.Duration
		bad  bool
	}{
		{nil, 0, false},
		{[]string{"--retain-cores", "90d"}, 90 * 24 * time.Hour, false},
		{[]string{"--retain-cores=36h"}, 36 * time.Hour, false},
		{[]string{"--retain-cores", "0"}, 0, false},
		{[]string{"--retain-cores", "-1h"}, 0, true},
		{[]string{"--retain-cores", "1.5d"}, 0, true},
		{[]string{"--retain-cores", "soon"}, 0, true},
	} {
		fset := pflag.NewFlagSet("api", pflag.ContinueOnError)
		fset.SetOutput(new(bytes.Buffer))
		f := retentionFlagsOf(fset)
		err := fset.Parse(c.args)
		if (err != nil) != c.bad || (!c.bad && time.Duration(f.cores) != c.want) {
			t.Errorf("%q: cores %v, err %v; want %v, error %v", c.args, time.Duration(f.cores), err, c.want, c.bad)
		}
	}
	short := &retentionFlags{cores: days(time.Minute), interval: time.Minute}
	if _, err := sweeperPart(slog.New(slog.DiscardHandler), nil, nil, nil, short); err == nil || !strings.Contains(err.Error(), "an hour or more") {
		t.Errorf("--retain-cores 1m: %v, want an error asking for an hour or more", err)
	}
}

// The api part with --rebuild and --retain-reports: once the index is
// rebuilt, its sweeper (holding the lease in NATS) deletes the old report
// and keeps the new one.
func TestAPIPartSweeps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := pipetest.Start(t)
	idx, err := sqlite.Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	var ids []string
	for _, age := range []time.Duration{100 * 24 * time.Hour, time.Hour} {
		at := time.Now().UTC().Add(-age)
		r := &corepipe.Report{Schema: 1, ID: corepipe.NewID(at), Status: corepipe.StatusAnalyzed, CapturedAt: at, Node: "n", Signature: "gocrash/v1:12"}
		b, _ := json.Marshal(r)
		if err := p.Blobs.Put(ctx, corepipe.ReportKey(r.ID), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	retain := &retentionFlags{reports: days(30 * 24 * time.Hour), keep: 2, interval: time.Minute}
	_, stop := startAPIPart(t, ctx, idx, p.Blobs, p.Queue, apiSetup{rebuild: true, metrics: newRegistry(), retain: retain})
	defer stop()
	testkit.WaitFor(t, "the old report to be swept from the blob store and the index", func() bool {
		_, err := p.Blobs.Stat(ctx, corepipe.ReportKey(ids[0]))
		_, ierr := idx.Crash(ctx, ids[0])
		return errors.Is(err, corepipe.ErrNotFound) && errors.Is(ierr, corepipe.ErrNotFound)
	})
	testkit.WaitFor(t, "the new report to be indexed", func() bool { _, err := idx.Crash(ctx, ids[1]); return err == nil })
	if _, err := p.Blobs.Stat(ctx, corepipe.ReportKey(ids[1])); err != nil {
		t.Errorf("the new report: %v", err)
	}
}

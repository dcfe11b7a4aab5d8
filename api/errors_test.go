package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

// downStore is a blob store whose reads fail the way blob/s3's do when the
// store does not answer: a safe message, and the endpoint, bucket and key
// in the detail.
type downStore struct{ corepipe.BlobStore }

const downDetail = "s3 blob store http://minio.internal:9000/corepipe-prod/crashes/: get cores/2026/01/02/node-a/ID/core.zst: dial tcp 10.0.0.7:9000: connect: connection refused"

func (downStore) Get(context.Context, string) (io.ReadCloser, error) {
	return nil, &corepipe.Error{Code: corepipe.EUNAVAILABLE, Message: "the blob store did not answer", Err: errors.New(downDetail)}
}

// TestUnavailableBodyLeaksNothing: a viewer (or anyone on an auth-less dev
// server) asking while the store is down learns that it is down, not its
// endpoint, bucket or keys; the operator finds those in the log.
func TestUnavailableBodyLeaksNothing(t *testing.T) {
	var logBuf testkit.SyncBuffer
	var e *env
	e = newEnvWith(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
		c.Blobs = downStore{c.Blobs}
	})
	r := newReport(time.Minute)
	r.Artifacts.Core = corepipe.CoreArtifact{Key: corepipe.CoreKey(&corepipe.Crash{ID: r.ID, CapturedAt: r.CapturedAt, Node: r.Node})}
	if err := e.index.Upsert(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/crashes/" + r.ID, "/api/v1/crashes/" + r.ID + "/core", "/crashes/" + r.ID} {
		resp, body := e.get(path)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s: %s, want 503: %s", path, resp.Status, body)
		}
		for _, secret := range []string{"minio.internal", "9000", "corepipe-prod", "cores/", "10.0.0.7", "dial tcp"} {
			if strings.Contains(string(body), secret) {
				t.Errorf("%s: body names %q: %s", path, secret, body)
			}
		}
		if !strings.Contains(string(body), "did not answer") {
			t.Errorf("%s: body does not say what happened: %s", path, body)
		}
	}
	if log := logBuf.String(); !strings.Contains(log, "minio.internal:9000") || !strings.Contains(log, "crash_id="+r.ID) {
		t.Errorf("the log lacks the detail for the operator:\n%s", log)
	}
}

func TestErrorForms(t *testing.T) {
	safe := &corepipe.Error{Code: corepipe.ENOTFOUND, Message: "no such object", Err: errors.New("/var/lib/blobs/k")}
	for _, tc := range []struct {
		err    error
		status int
		msg    string
	}{
		{fmt.Errorf("%w: status %q", corepipe.ErrInvalid, "x"), 400, `invalid: status "x"`},
		{safe, 404, "no such object"},
		{fmt.Errorf("outer: %w", safe), 404, "no such object"},
		{corepipe.Wrap(safe, "crash %s: open core", "ID"), 404, "crash ID: open core: no such object"},
		{corepipe.Wrap(errors.New("/etc/secret: EIO"), "crash %s", "ID"), 500, "crash ID: internal error"},
		{errors.New("disk /dev/sda on fire"), 500, "internal error"},
	} {
		if got := errorStatus(tc.err); got != tc.status {
			t.Errorf("%v: status %d, want %d", tc.err, got, tc.status)
		}
		if got := corepipe.ErrorMessage(tc.err); got != tc.msg {
			t.Errorf("%v: message %q, want %q", tc.err, got, tc.msg)
		}
	}
	if !errors.Is(corepipe.Wrap(safe, "x"), corepipe.ErrNotFound) {
		t.Error("a wrapped *Error lost its sentinel")
	}
}

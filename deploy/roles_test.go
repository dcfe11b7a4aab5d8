package deploy_test

// The per-role credentials of the chart, tested against the real servers:
// each role's NATS permissions and S3 policy (deploy/helm/corepipe/policies)
// let it do its job through corepipe's own adapters, and refuse it what
// another role does.

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/s3"
	"github.com/corepipe/corepipe/internal/testkit/miniotest"
	"github.com/corepipe/corepipe/internal/testkit/natstest"
	"github.com/corepipe/corepipe/internal/testkit/toolcache"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

const policies = "helm/corepipe/policies/"

// natsRoles are the parts that have a NATS user of their own.
var natsRoles = []string{"agent", "analyzer", "api", "notifier"}

// withNotifier renders every part, the notifier included.
const withNotifier = "notifier:\n  enabled: true\n  slack:\n    webhook: https://hooks.slack.com/x\n"

func policyFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(policies + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// natsWithRoles runs a real nats-server with the configuration the chart
// renders for its bundled NATS, given the environment the chart gives it,
// and returns each part's URL from the Secret the chart gives that part,
// pointed at this server.
func natsWithRoles(t *testing.T) func(role string) string {
	t.Helper()
	objs := renderObjects(t, withNotifier)
	var conf string
	if cm := byName[*corev1.ConfigMap](objs)[release+"-corepipe-nats"]; cm != nil {
		conf = cm.Data["nats.conf"]
	}
	if conf == "" {
		t.Fatal("no NATS configuration rendered")
	}
	secrets := byName[*corev1.Secret](objs)
	server := workloads(objs)["nats"].pod.Spec.Containers[0]
	for _, e := range server.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue // POD_NAME, for a cluster's server names
		}
		ref := e.ValueFrom.SecretKeyRef
		s, ok := secrets[ref.Name]
		if !ok {
			t.Fatalf("NATS's %s is from Secret %s, which is not rendered", e.Name, ref.Name)
		}
		t.Setenv(e.Name, s.StringData[ref.Key])
	}
	p := natstest.StartExternalConfig(t, conf)
	server0, err := url.Parse(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	urls := map[string]string{}
	for component, w := range workloads(objs) {
		for _, e := range w.pod.Spec.Containers[0].Env {
			if e.Name != "COREPIPE_NATS" {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			u, err := url.Parse(secrets[ref.Name].StringData[ref.Key])
			if err != nil {
				t.Fatalf("%s: NATS URL: %v", component, err)
			}
			u.Host = server0.Host
			urls[component] = u.String()
		}
	}
	return func(role string) string {
		t.Helper()
		u, ok := urls[role]
		if !ok {
			t.Fatalf("the chart gives %s no NATS URL of its own", role)
		}
		return u
	}
}

// openAs opens the queue as role. A refused request is answered by nothing,
// so it fails after the request timeout: keep it short.
func openAs(t *testing.T, urlOf func(string) string, role string) *natsq.Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := natsq.Open(ctx, urlOf(role), natsq.RequestTimeout(time.Second), natsq.Name("corepipe-"+role))
	if err != nil {
		t.Fatalf("open the queue as %s: %v", role, err)
	}
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	return q
}

func refused(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want refused", what)
	}
}

func TestNATSRolePermissions(t *testing.T) {
	urlOf := natsWithRoles(t)
	ctx := context.Background()
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }

	agent := openAs(t, urlOf, "agent")
	crash := &corepipe.Crash{Schema: 1, ID: corepipe.NewID(time.Now()), Node: "node-1", CapturedAt: time.Now().UTC()}
	if err := agent.PublishCrash(ctx, crash); err != nil {
		t.Fatalf("agent: publish a crash: %v", err)
	}

	analyzer := openAs(t, urlOf, "analyzer")
	crashes, err := analyzer.Crashes(ctx, "analyzer")
	if err != nil {
		t.Fatalf("analyzer: consume crashes: %v", err)
	}
	if n, err := crashes.(interface {
		Pending(context.Context) (uint64, error)
	}).Pending(ctx); err != nil || n != 1 {
		t.Errorf("analyzer: %d crashes pending (%v), want 1", n, err)
	}
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	msg, err := crashes.Next(nctx)
	cancel()
	if err != nil {
		t.Fatalf("analyzer: next crash: %v", err)
	}
	if !strings.Contains(string(msg.Data()), crash.ID) {
		t.Errorf("analyzer got %s, want crash %s", msg.Data(), crash.ID)
	}
	if err := msg.InProgress(ctx); err != nil {
		t.Errorf("analyzer: in progress: %v", err)
	}
	report := &corepipe.Report{Schema: 1, ID: crash.ID, Status: "analyzed"}
	if err := analyzer.PublishReport(ctx, report); err != nil {
		t.Fatalf("analyzer: publish the report: %v", err)
	}
	if err := msg.Ack(ctx); err != nil {
		t.Fatalf("analyzer: ack: %v", err)
	}

	for _, role := range []string{"api", "notifier"} {
		q := openAs(t, urlOf, role)
		reports, err := q.Reports(ctx, role)
		if err != nil {
			t.Fatalf("%s: consume reports: %v", role, err)
		}
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := reports.Next(nctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: next report: %v", role, err)
		}
		if !strings.Contains(string(msg.Data()), crash.ID) {
			t.Errorf("%s got %s, want the report of %s", role, msg.Data(), crash.ID)
		}
		if err := msg.Ack(ctx); err != nil {
			t.Errorf("%s: ack: %v", role, err)
		}

		c, cancel := short()
		refused(t, role+": publish a crash", q.PublishCrash(c, &corepipe.Crash{ID: corepipe.NewID(time.Now()), Node: "forged"}))
		cancel()
		c, cancel = short()
		refused(t, role+": publish a report", q.PublishReport(c, &corepipe.Report{ID: corepipe.NewID(time.Now()), Status: "analyzed"}))
		cancel()
		c, cancel = short()
		_, err = q.Crashes(c, "analyzer")
		cancel()
		refused(t, role+": consume crashes", err)
	}

	// The agent only adds crashes: it reads nothing back, and announces
	// no report.
	c, cancel := short()
	refused(t, "agent: publish a report", agent.PublishReport(c, &corepipe.Report{ID: corepipe.NewID(time.Now()), Status: "analyzed"}))
	cancel()
	for _, durable := range []string{"analyzer", "agent"} {
		c, cancel = short()
		_, err = agent.Crashes(c, durable)
		cancel()
		refused(t, "agent: consume crashes as "+durable, err)
	}
	c, cancel = short()
	_, err = agent.Reports(c, "api")
	cancel()
	refused(t, "agent: consume reports", err)

	// The analyzer does not forge crashes, nor read the reports stream.
	c, cancel = short()
	refused(t, "analyzer: publish a crash", analyzer.PublishCrash(c, &corepipe.Crash{ID: corepipe.NewID(time.Now()), Node: "forged"}))
	cancel()
	c, cancel = short()
	_, err = analyzer.Reports(c, "api")
	cancel()
	refused(t, "analyzer: consume reports", err)

	// Nobody but the publisher's own stream sees the subjects: a plain
	// subscription to the messages is refused for every role.
	for _, role := range natsRoles {
		refusedSubscribe(t, urlOf(role), role, "corepipe.>")
		refusedSubscribe(t, urlOf(role), role, "$JS.API.>")
	}
}

// refusedSubscribe checks that the server refuses role a subscription to
// subject.
func refusedSubscribe(t *testing.T, u, role, subject string) {
	t.Helper()
	errs := make(chan error, 4)
	nc, err := nats.Connect(u, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("%s: connect: %v", role, err)
	}
	defer nc.Close()
	if _, err := nc.SubscribeSync(subject); err != nil {
		t.Fatalf("%s: subscribe: %v", role, err)
	}
	_ = nc.Flush()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("%s: subscribe %s: %v, want a permissions violation", role, subject, err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s: subscribe %s: allowed, want refused", role, subject)
	}
}

// s3Roles are the chart's S3 users and the policy each one gets.
var s3Roles = map[string]string{
	"agent":    "s3-agent.json",
	"analyzer": "s3-analyzer.json",
	"api":      "s3-api.json",
}

// s3Policy is a role's policy document for bucket, as the chart renders it.
func s3Policy(t *testing.T, role, bucket string) string {
	t.Helper()
	return strings.ReplaceAll(policyFile(t, s3Roles[role]), "BUCKET", bucket)
}

func TestS3RolePolicies(t *testing.T) {
	srv := miniotest.Start(t)
	const bucket = "corepipe"
	u, err := url.Parse(srv.URL(bucket))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The chart's setup job makes the bucket with the root credentials:
	// no role may create one.
	root, rootSecret := srv.Credentials()
	if _, err := s3.Open(ctx, u, s3.WithCredentials(root, rootSecret)); err != nil {
		t.Fatalf("open as root: %v", err)
	}
	stores := map[string]*s3.Store{}
	for role := range s3Roles {
		srv.AddUser("corepipe-"+role, role+"-secret-key", s3Policy(t, role, bucket))
		st, err := s3.Open(ctx, u, s3.WithCredentials("corepipe-"+role, role+"-secret-key"))
		if err != nil {
			t.Fatalf("open the blob store as %s: %v", role, err)
		}
		stores[role] = st
	}
	agent, analyzer, api := stores["agent"], stores["analyzer"], stores["api"]

	crash := &corepipe.Crash{ID: corepipe.NewID(time.Now()), Node: "node-1", CapturedAt: time.Now().UTC()}
	core, manifest, exe, report := corepipe.CoreKey(crash), corepipe.ManifestKey(crash), corepipe.ExecutableKey("0123abcd"), corepipe.ReportKey(crash.ID)

	// The agent: dedup checks of executables and of recorded terminations
	// must see "not found", not "denied".
	for _, key := range []string{exe, manifest} {
		if _, err := agent.Stat(ctx, key); !errors.Is(err, corepipe.ErrNotFound) {
			t.Errorf("agent: stat missing %s: %v, want not found", key, err)
		}
	}
	for key, body := range map[string]string{core: "core", manifest: "{}", corepipe.LogKey(crash): "panic: x", exe: "\x7fELF"} {
		put(t, "agent", agent, key, body, true)
	}
	get(t, "agent", agent, exe, true)
	if n, err := agent.Stat(ctx, manifest); err != nil || n != 2 {
		t.Errorf("agent: stat its manifest: %d, %v", n, err)
	}

	// The analyzer reads what the agent stored and writes the report.
	for _, key := range []string{core, corepipe.LogKey(crash), manifest, exe} {
		get(t, "analyzer", analyzer, key, true)
	}
	put(t, "analyzer", analyzer, report, `{"schema":1}`, true)

	// The API reads everything, and lists the reports to rebuild its index.
	for _, key := range []string{report, core, exe} {
		get(t, "api", api, key, true)
	}
	var listed []string
	if err := api.List(ctx, corepipe.ReportsPrefix, func(key string) error { listed = append(listed, key); return nil }); err != nil || len(listed) != 1 || listed[0] != report {
		t.Errorf("api: list reports: %v, %v", listed, err)
	}

	// What each must not do.
	get(t, "agent", agent, core, false)
	get(t, "agent", agent, report, false)
	put(t, "agent", agent, report, "{}", false)
	put(t, "agent", agent, "symbols/x", "x", false)
	put(t, "analyzer", analyzer, core, "forged", false)
	put(t, "analyzer", analyzer, exe, "forged", false)
	put(t, "analyzer", analyzer, manifest, "forged", false)
	for _, key := range []string{report, core, exe, "other/x"} {
		put(t, "api", api, key, "forged", false)
	}
	get(t, "analyzer", analyzer, "other/x", false)
	// The refused writes changed nothing.
	rootStore, err := s3.Open(ctx, u, s3.WithCredentials(root, rootSecret))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{core: "core", exe: "\x7fELF", report: `{"schema":1}`} {
		if got := read(t, rootStore, key); got != want {
			t.Errorf("%s holds %q, want %q", key, got, want)
		}
	}
}

func put(t *testing.T, role string, st *s3.Store, key, body string, allowed bool) {
	t.Helper()
	err := st.Put(context.Background(), key, strings.NewReader(body), int64(len(body)))
	check(t, role+": put "+key, err, allowed)
}

func get(t *testing.T, role string, st *s3.Store, key string, allowed bool) {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err == nil {
		rc.Close()
	}
	check(t, role+": get "+key, err, allowed)
}

func check(t *testing.T, what string, err error, allowed bool) {
	t.Helper()
	switch {
	case allowed && err != nil:
		t.Errorf("%s: %v", what, err)
	case !allowed && err == nil:
		t.Errorf("%s: allowed, want refused", what)
	case !allowed && !strings.Contains(err.Error(), "AccessDenied"):
		t.Errorf("%s: %v, want AccessDenied", what, err)
	}
}

func read(t *testing.T, st *s3.Store, key string) string {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestChartMinIOSetup runs the chart's MinIO setup script, with the real mc,
// against a real MinIO, twice (an install, then an upgrade), and checks that
// each part's rendered credentials then work, with its policy.
func TestChartMinIOSetup(t *testing.T) {
	mc := toolcache.Find(t, "mc", toolcache.McVersion)
	objs := renderObjects(t)
	srv := miniotest.Start(t)
	dir := t.TempDir()
	var script string
	for _, cm := range ofType[*corev1.ConfigMap](objs) {
		if cm.Name != release+"-corepipe-minio-setup" {
			continue
		}
		if err := os.Mkdir(filepath.Join(dir, "setup"), 0o700); err != nil {
			t.Fatal(err)
		}
		for name, data := range cm.Data {
			if err := os.WriteFile(filepath.Join(dir, "setup", name), []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		script = cm.Data["setup.sh"]
	}
	if script == "" {
		t.Fatal("no setup script rendered")
	}
	secrets := byName[*corev1.Secret](objs)
	for _, role := range []string{"agent", "analyzer", "api"} {
		d := filepath.Join(dir, "credentials", role)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		key := secrets[release+"-corepipe-"+role+"-credentials"].StringData["AWS_SECRET_ACCESS_KEY"]
		if err := os.WriteFile(filepath.Join(d, "AWS_SECRET_ACCESS_KEY"), []byte(key), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The job's paths and the Service's address, here.
	script = strings.NewReplacer(
		"/setup/", dir+"/setup/",
		"/credentials/", dir+"/credentials/",
		release+"-corepipe-minio:9000", srv.Endpoint(),
	).Replace(script)
	root, rootSecret := srv.Credentials()
	for _, run := range []string{"install", "upgrade"} {
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Env = []string{
			"PATH=" + filepath.Dir(mc) + ":/usr/bin:/bin",
			"HOME=" + t.TempDir(),
			"MINIO_ROOT_USER=" + root,
			"MINIO_ROOT_PASSWORD=" + rootSecret,
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("setup script, %s: %v\n%s", run, err, out)
		}
	}

	u, err := url.Parse(srv.URL("corepipe"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stores := map[string]*s3.Store{}
	for _, role := range []string{"agent", "analyzer", "api"} {
		s := secrets[release+"-corepipe-"+role+"-credentials"].StringData
		st, err := s3.Open(ctx, u, s3.WithCredentials(s["AWS_ACCESS_KEY_ID"], s["AWS_SECRET_ACCESS_KEY"]))
		if err != nil {
			t.Fatalf("open the blob store as %s with its rendered credentials: %v", role, err)
		}
		stores[role] = st
	}
	crash := &corepipe.Crash{ID: corepipe.NewID(time.Now()), Node: "node-1", CapturedAt: time.Now().UTC()}
	core, report := corepipe.CoreKey(crash), corepipe.ReportKey(crash.ID)
	put(t, "agent", stores["agent"], core, "core", true)
	put(t, "agent", stores["agent"], report, "{}", false)
	get(t, "analyzer", stores["analyzer"], core, true)
	put(t, "analyzer", stores["analyzer"], report, "{}", true)
	get(t, "api", stores["api"], report, true)
	put(t, "api", stores["api"], report, "forged", false)
}

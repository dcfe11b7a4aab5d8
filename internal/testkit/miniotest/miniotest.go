// Package miniotest runs a real MinIO server for tests: one process per
// Start on free loopback ports with generated credentials, that a test can
// stop and restart to see what the pipeline does when the store goes away.
package miniotest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/corepipe/corepipe/internal/testkit/toolcache"
)

// readyTimeout bounds a start; MinIO is usually live in a second or two.
const readyTimeout = 30 * time.Second

// Server is a running MinIO process. Its methods must be called from the
// test's goroutine, since they fail the test on error.
type Server struct {
	t         testing.TB
	bin       string
	dataDir   string
	logPath   string
	addr      string
	console   string
	accessKey string
	secretKey string
	// endpoints are the drives of a distributed set (StartErasureSet),
	// nil for a server of one directory.
	endpoints []string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// StartErasureSet starts a MinIO process on each of hosts (IP addresses of
// this machine), together one distributed erasure set, a drive each,
// sharing one set of credentials, and returns once every one serves. With
// 4, the set keeps serving reads and writes with one process down. They
// stop when the test ends.
//
// In a container (/.dockerenv), MinIO waits forever for a distributed
// endpoint on a loopback address to "resolve to a valid IP": run the test
// in a network namespace of its own with addresses of a dummy interface
// (testkit/netns).
func StartErasureSet(t testing.TB, hosts []string) []*Server {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		t.Fatalf("miniotest: %v; run scripts/install-minio.sh (make test does) or set COREPIPE_MINIO", err)
	}
	tmp := t.TempDir()
	accessKey, secretKey := "corepipe-"+strings.ToLower(rand.Text()[:8]), rand.Text()
	set := make([]*Server, len(hosts))
	var endpoints []string
	for i := range set {
		set[i] = &Server{
			t:         t,
			bin:       bin,
			dataDir:   filepath.Join(tmp, fmt.Sprintf("drive%d", i+1)),
			logPath:   filepath.Join(tmp, fmt.Sprintf("minio%d.log", i+1)),
			addr:      freeAddrOn(t, hosts[i]),
			console:   freeAddrOn(t, hosts[i]),
			accessKey: accessKey,
			secretKey: secretKey,
		}
		endpoints = append(endpoints, "http://"+set[i].addr+set[i].dataDir)
	}
	for _, s := range set {
		s.endpoints = endpoints
		t.Cleanup(s.Stop)
		s.launch()
	}
	// A server serves only once the set has its quorum: start all first.
	for _, s := range set {
		if err := s.waitReady(); err != nil {
			t.Fatalf("miniotest: erasure set member %s: %v\n--- minio log tail ---\n%s", s.addr, err, s.logTail())
		}
	}
	return set
}

// Start starts MinIO with an empty data directory and stops it when the test
// ends. It fails the test if the minio binary cannot be found: it is
// $COREPIPE_MINIO, else the pinned version in the tool cache, where
// scripts/install-minio.sh puts it, else minio on $PATH.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		t.Fatalf("miniotest: %v; run scripts/install-minio.sh (make test does) or set COREPIPE_MINIO", err)
	}
	tmp := t.TempDir()
	s := &Server{
		t:         t,
		bin:       bin,
		dataDir:   filepath.Join(tmp, "data"),
		logPath:   filepath.Join(tmp, "minio.log"),
		addr:      freeAddr(t),
		console:   freeAddr(t),
		accessKey: "corepipe-" + strings.ToLower(rand.Text()[:8]),
		secretKey: rand.Text(),
	}
	t.Cleanup(s.Stop)
	s.start()
	return s
}

// Endpoint is the server's host:port.
func (s *Server) Endpoint() string { return s.addr }

// Credentials returns the server's root access key and secret key.
func (s *Server) Credentials() (accessKey, secretKey string) { return s.accessKey, s.secretKey }

// URL returns the blob URL of bucket on this server, as the --blob flag
// takes it. Credentials are not in it: pass them with Env or Credentials.
func (s *Server) URL(bucket string) string {
	q := url.Values{"endpoint": {s.addr}, "insecure": {"1"}}
	return (&url.URL{Scheme: "s3", Host: bucket, RawQuery: q.Encode()}).String()
}

// Env returns the environment a client needs to reach this server with the
// standard AWS variables, for child processes or t.Setenv. It clears
// AWS_SESSION_TOKEN, which a developer's shell may hold for real AWS.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.accessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.secretKey,
		"AWS_SESSION_TOKEN=",
	}
}

// Stop kills the server, as a crash or a lost node would, and waits for it
// to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart stops the server if it runs and starts it again on the same
// address with the same data, credentials and objects.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

func (s *Server) start() {
	s.t.Helper()
	s.launch()
	if err := s.waitReady(); err != nil {
		s.Stop()
		s.t.Fatalf("miniotest: minio on %s: %v\n--- minio log tail ---\n%s", s.addr, err, s.logTail())
	}
}

// launch starts the process without waiting for it to serve.
func (s *Server) launch() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("miniotest: %v", err)
	}
	defer logf.Close()

	args := append([]string{"server"}, s.endpoints...)
	if s.endpoints == nil {
		args = append(args, s.dataDir)
	}
	cmd := exec.Command(s.bin, append(args, "--address", s.addr, "--console-address", s.console, "--quiet")...)
	cmd.Env = append(withoutMinioEnv(os.Environ()),
		"MINIO_ROOT_USER="+s.accessKey,
		"MINIO_ROOT_PASSWORD="+s.secretKey,
		"MINIO_UPDATE=off",
	)
	if s.endpoints != nil {
		// A distributed set refuses drives on the root filesystem, which
		// test directories are, unless told it runs in CI.
		cmd.Env = append(cmd.Env, "MINIO_CI_CD=1")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("miniotest: start %s: %v", s.bin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
}

// waitReady polls /minio/health/live until MinIO listens, then an
// authenticated ListBuckets until it succeeds: MinIO answers 503
// XMinioServerNotInitialized for a while after it is live, and even after
// /minio/health/ready says 200, until its IAM subsystem is loaded.
func (s *Server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client, err := minio.New(s.addr, &minio.Options{
		Creds:      credentials.NewStaticV4(s.accessKey, s.secretKey, ""),
		MaxRetries: 1,
	})
	if err != nil {
		return err
	}
	checks := []struct {
		name  string
		check func(context.Context) error
	}{
		{"live", s.live},
		{"ready", func(ctx context.Context) error { _, err := client.ListBuckets(ctx); return err }},
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, c := range checks {
		for {
			attempt, cancel := context.WithTimeout(ctx, time.Second)
			err := c.check(attempt)
			cancel()
			if err == nil {
				break
			}
			select {
			case <-s.exited:
				return fmt.Errorf("exited before it was %s: %v", c.name, s.cmd.ProcessState)
			case <-ctx.Done():
				return fmt.Errorf("not %s after %v: %v", c.name, readyTimeout, err)
			case <-tick.C:
			}
		}
	}
	return nil
}

func (s *Server) live(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/minio/health/live", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// logTail returns the end of the server's log, enough to see why it failed.
func (s *Server) logTail() string {
	const n = 4 << 10
	f, err := os.Open(s.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// withoutMinioEnv drops the MINIO_* variables of the developer's shell,
// which could give the server another identity or configuration.
func withoutMinioEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MINIO_") {
			out = append(out, kv)
		}
	}
	return out
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. MinIO takes the address on its command line, so the port cannot be
// handed over as an open listener.
func freeAddr(t testing.TB) string { return freeAddrOn(t, "127.0.0.1") }

// freeAddrOn is freeAddr on another of the machine's addresses.
func freeAddrOn(t testing.TB, host string) string {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func findBinary() (string, error) {
	if bin := os.Getenv("COREPIPE_MINIO"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("COREPIPE_MINIO: %w", err)
		}
		return bin, nil
	}
	var tried []string
	bin := toolcache.Path("minio", toolcache.MinioVersion)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tried = append(tried, bin)
	bin, err := exec.LookPath("minio")
	if err == nil {
		return bin, nil
	}
	tried = append(tried, "$PATH")
	return "", fmt.Errorf("no minio binary in %s", strings.Join(tried, " or "))
}

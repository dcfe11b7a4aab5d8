// Package kubetest runs a real Kubernetes API server for tests: etcd and
// kube-apiserver as processes on free loopback ports, with temporary data
// and an admin token, so that client-go code meets real list/watch
// semantics, validation and field selectors instead of the fake clientset's.
// There is no kubelet, scheduler or controller: a test plays the kubelet by
// writing pod status itself. A test can stop and restart the API server
// (etcd and its data stay) to see what its code does while it is down.
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/corepipe/corepipe/internal/testkit/toolcache"
)

// readyTimeout bounds a start; here etcd is ready in well under a second
// and the API server in about two.
const readyTimeout = 60 * time.Second

// Server is a running API server and its etcd. Its methods must be called
// from the test's goroutine, since they fail the test on error.
type Server struct {
	t          testing.TB
	dir        string
	apiserver  string
	etcdBin    string
	etcdURL    string
	peerURL    string
	port       int
	token      string
	kubeconfig string

	etcd *process
	api  *process
}

// Start runs etcd and the API server until the test ends; it skips the test
// when they are not installed (fails in CI).
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:         t,
		etcdBin:   toolcache.Find(t, "etcd", toolcache.EtcdVersion),
		apiserver: toolcache.Find(t, "kube-apiserver", toolcache.KubeAPIServerVersion),
		dir:       t.TempDir(),
		token:     rand.Text(),
	}
	addrs := freeAddrs(t, 3)
	s.etcdURL, s.peerURL = "http://"+addrs[0], "http://"+addrs[1]
	_, port, _ := net.SplitHostPort(addrs[2])
	s.port, _ = strconv.Atoi(port)
	s.writeFiles()
	t.Cleanup(s.stopAll)

	s.startEtcd()
	s.startAPIServer()
	return s
}

// Config is a client configuration of an admin (group system:masters). Each
// call returns a new copy the caller may change. ConfigFor gives one of a
// less privileged account.
func (s *Server) Config() *rest.Config {
	return &rest.Config{
		Host:            s.URL(),
		BearerToken:     s.token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.caFile()},
		// The default rate limit (5 QPS) would pace a test, not protect
		// anything.
		QPS:   -1,
		Burst: -1,
	}
}

// Client is a clientset of the admin.
func (s *Server) Client() kubernetes.Interface {
	s.t.Helper()
	c, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		s.t.Fatalf("kubetest: client: %v", err)
	}
	return c
}

// ConfigFor is a client configuration of service account name in namespace
// (which must exist), with a token from the TokenRequest API: a client with
// only the rights RBAC gives that account, to test what a component's
// ClusterRole lets it do.
func (s *Server) ConfigFor(namespace, name string) *rest.Config {
	s.t.Helper()
	ctx := context.Background()
	sas := s.Client().CoreV1().ServiceAccounts(namespace)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := sas.Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		s.t.Fatalf("kubetest: service account %s/%s: %v", namespace, name, err)
	}
	tr, err := sas.CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatalf("kubetest: token of %s/%s: %v", namespace, name, err)
	}
	cfg := s.Config()
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// Grant binds service account namespace/name to a cluster role of its own,
// named after it, with rules only, and returns once the API server's
// authorizer honours every rule: the RBAC authorizer reads bindings from a
// watch cache, so a request made right after the create can still be
// refused. It returns the account's client configuration.
func (s *Server) Grant(namespace, name string, rules []rbacv1.PolicyRule) *rest.Config {
	s.t.Helper()
	ctx := context.Background()
	admin := s.Client()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		s.t.Fatalf("kubetest: namespace %s: %v", namespace, err)
	}
	cfg := s.ConfigFor(namespace, name)
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("kubetest: cluster role %s: %v", name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: namespace}}}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("kubetest: cluster role binding %s: %v", name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, rule := range rules {
		for _, group := range rule.APIGroups {
			for _, resource := range rule.Resources {
				for _, verb := range rule.Verbs {
					s.waitAllowed(namespace, name, authorizationv1.ResourceAttributes{Group: group, Resource: resource, Verb: verb}, deadline)
				}
			}
		}
	}
	return cfg
}

// waitAllowed returns once the authorizer lets service account
// namespace/name do what attrs say, and fails the test past deadline.
func (s *Server) waitAllowed(namespace, name string, attrs authorizationv1.ResourceAttributes, deadline time.Time) {
	s.t.Helper()
	user := "system:serviceaccount:" + namespace + ":" + name
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               user,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
		ResourceAttributes: &attrs}}
	reviews := s.Client().AuthorizationV1().SubjectAccessReviews()
	for {
		got, err := reviews.Create(context.Background(), review, metav1.CreateOptions{})
		if err == nil && got.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("kubetest: %s may not %s %s: %v", user, attrs.Verb, attrs.Resource, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kubeconfig is the path of a kubeconfig file of the admin, for programs
// that take --kubeconfig.
func (s *Server) Kubeconfig() string { return s.kubeconfig }

// URL is the API server's address, the same across restarts.
func (s *Server) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", s.port) }

// Stop kills the API server, as a crash or a lost control plane would, and
// waits for it to exit; etcd keeps running. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	s.api.stop()
	s.api = nil
}

// Restart stops the API server if it runs and starts it again on the same
// port, with the same certificate, token and stored objects, and returns
// once it is ready.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.startAPIServer()
}

func (s *Server) stopAll() {
	s.Stop()
	s.etcd.stop()
	s.etcd = nil
}

func (s *Server) caFile() string { return filepath.Join(s.dir, "certs", "apiserver.crt") }

// writeFiles writes what the API server reads: a service account signing
// key (it refuses to start without one), the token file of the admin, and
// the kubeconfig a client uses.
func (s *Server) writeFiles() {
	s.t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		s.t.Fatalf("kubetest: service account key: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		s.t.Fatalf("kubetest: service account key: %v", err)
	}
	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: s.URL(), CertificateAuthority: s.caFile()}
	kubeconfig.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: s.token}
	kubeconfig.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin"}
	kubeconfig.CurrentContext = "kubetest"
	s.kubeconfig = filepath.Join(s.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfig, s.kubeconfig); err != nil {
		s.t.Fatalf("kubetest: kubeconfig: %v", err)
	}
	for name, b := range map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"tokens.csv": []byte(s.token + ",admin,admin-uid,system:masters\n"),
	} {
		if err := os.WriteFile(filepath.Join(s.dir, name), b, 0o600); err != nil {
			s.t.Fatalf("kubetest: %v", err)
		}
	}
}

func (s *Server) startEtcd() {
	s.t.Helper()
	s.etcd = s.run("etcd", s.etcdBin,
		"--name", "kubetest",
		"--data-dir", filepath.Join(s.dir, "etcd"),
		"--listen-client-urls", s.etcdURL,
		"--advertise-client-urls", s.etcdURL,
		"--listen-peer-urls", s.peerURL,
		"--initial-advertise-peer-urls", s.peerURL,
		"--initial-cluster", "kubetest="+s.peerURL,
		// A test's objects are worth no fsync.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	)
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	s.waitReady(s.etcd, func(ctx context.Context) error {
		return get(ctx, client, s.etcdURL+"/health", "")
	})
}

func (s *Server) startAPIServer() {
	s.t.Helper()
	s.api = s.run("kube-apiserver", s.apiserver,
		"--etcd-servers", s.etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(s.port),
		// It makes itself a CA and a serving certificate here on the first
		// start and reuses them on a restart, so clients keep trusting it.
		"--cert-dir", filepath.Join(s.dir, "certs"),
		"--token-auth-file", filepath.Join(s.dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(s.dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(s.dir, "sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/24",
		// The reconciler keeps the kubernetes Service's endpoints at the
		// advertised address and refuses a loopback one.
		"--endpoint-reconciler-type", "none",
		// Without controllers, a pod could never get the default service
		// account this plugin waits for: tests create pods directly.
		"--disable-admission-plugins", "ServiceAccount",
		"--profiling=false",
	)
	client := &http.Client{Timeout: 2 * time.Second, Transport: s.transport()}
	defer client.CloseIdleConnections()
	s.waitReady(s.api, func(ctx context.Context) error {
		return get(ctx, client, s.URL()+"/readyz", s.token)
	})
}

// transport trusts the API server's certificate once it has written it.
func (s *Server) transport() http.RoundTripper {
	return &lazyTLS{s: s}
}

type lazyTLS struct {
	s  *Server
	rt http.RoundTripper
}

func (l *lazyTLS) RoundTrip(req *http.Request) (*http.Response, error) {
	if l.rt == nil {
		cfg, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAFile: l.s.caFile()}})
		if err != nil {
			return nil, err // not written yet
		}
		l.rt = &http.Transport{TLSClientConfig: cfg}
	}
	resp, err := l.rt.RoundTrip(req)
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		// The CA was read while the server was still writing its
		// certificates: read it again on the next try.
		l.CloseIdleConnections()
		l.rt = nil
	}
	return resp, err
}

func (l *lazyTLS) CloseIdleConnections() {
	if t, ok := l.rt.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

func get(ctx context.Context, client *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

// waitReady polls check until it succeeds, failing the test if p exits or
// the check keeps failing.
func (s *Server) waitReady(p *process, check func(context.Context) error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		err := check(attempt)
		cancelAttempt()
		if err == nil {
			return
		}
		select {
		case <-p.exited:
			s.t.Fatalf("kubetest: %s exited before it was ready: %v\n--- %s ---\n%s", p.name, p.cmd.ProcessState, p.log, logTail(p.log))
		case <-ctx.Done():
			p.stop()
			s.t.Fatalf("kubetest: %s not ready after %v: %v\n--- %s ---\n%s", p.name, readyTimeout, err, p.log, logTail(p.log))
		case <-tick.C:
		}
	}
}

// process is one child process with its log in the server's directory.
type process struct {
	name   string
	log    string
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
}

func (s *Server) run(name, bin string, args ...string) *process {
	s.t.Helper()
	p := &process{name: name, log: filepath.Join(s.dir, name+".log"), exited: make(chan struct{})}
	logf, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("kubetest: %v", err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, args...)
	// An *os.File goes to the child as is: no copying goroutine that could
	// outlive the test.
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir}
	// If the test binary dies without its cleanups (a panic, -timeout) the
	// kernel kills the servers too.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		s.t.Fatalf("kubetest: start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait() // how it ended is in its log
		close(p.exited)
	}()
	return p
}

// stop kills p and waits for it; nil or stopped does nothing.
func (p *process) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// logTail is the end of a log, enough to see why a server failed.
func logTail(path string) string {
	const n = 4 << 10
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// freeAddrs returns n loopback addresses whose ports were free a moment
// ago, all different: the servers take their addresses on the command line,
// not as listeners.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("kubetest: %v", err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

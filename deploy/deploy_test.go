package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/corepipe/corepipe/internal/testkit/toolcache"
)

const (
	chart     = "helm/corepipe"
	release   = "crashes"
	namespace = "corepipe"
)

// helm finds the helm binary scripts/install-tools.sh installs. CI always
// has it; elsewhere the chart tests are skipped, saying how to get it.
func helm(t *testing.T) string {
	t.Helper()
	return toolcache.Find(t, "helm", toolcache.HelmVersion)
}

// render runs helm template with the given values files' contents.
func render(t *testing.T, values ...string) (string, error) {
	t.Helper()
	args := []string{"template", release, chart, "--namespace", namespace}
	for i, v := range values {
		f := filepath.Join(t.TempDir(), "values"+string(rune('a'+i))+".yaml")
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--values", f)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", errors.New(strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// objects decodes every rendered document strictly with client-go's scheme:
// an unknown kind, an unknown or misspelt field, a wrong type all fail.
func objects(t *testing.T, manifest string) []runtime.Object {
	t.Helper()
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode:\n%s\n%v", doc, err)
		}
		out = append(out, obj)
	}
	if len(out) == 0 {
		t.Fatal("nothing rendered")
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			b.Write(line)
		}
	}
	return b.Bytes()
}

func renderObjects(t *testing.T, values ...string) []runtime.Object {
	t.Helper()
	manifest, err := render(t, values...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return objects(t, manifest)
}

func ofType[T runtime.Object](objs []runtime.Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// byName indexes the rendered objects of type T by their names.
func byName[T interface {
	runtime.Object
	GetName() string
}](objs []runtime.Object) map[string]T {
	out := map[string]T{}
	for _, o := range ofType[T](objs) {
		out[o.GetName()] = o
	}
	return out
}

// workload is the pod template of a rendered Deployment, DaemonSet or
// StatefulSet, by its component label. A part that runs beside another in
// its pod (the notifier in the API's) is a workload too, by its container's
// name, with its container first.
type workload struct {
	kind, name string
	pod        corev1.PodTemplateSpec
}

func workloads(objs []runtime.Object) map[string]workload {
	out := map[string]workload{}
	add := func(kind, name string, pod corev1.PodTemplateSpec) {
		out[pod.Labels["app.kubernetes.io/component"]] = workload{kind, name, pod}
		for i, c := range pod.Spec.Containers[1:] {
			beside := *pod.DeepCopy()
			ctrs := beside.Spec.Containers
			ctrs[0], ctrs[i+1] = ctrs[i+1], ctrs[0]
			out[c.Name] = workload{kind, name + "/" + c.Name, beside}
		}
	}
	for _, d := range ofType[*appsv1.Deployment](objs) {
		add("Deployment", d.Name, d.Spec.Template)
	}
	for _, d := range ofType[*appsv1.DaemonSet](objs) {
		add("DaemonSet", d.Name, d.Spec.Template)
	}
	for _, s := range ofType[*appsv1.StatefulSet](objs) {
		add("StatefulSet", s.Name, s.Spec.Template)
	}
	return out
}

// custom is a production-like configuration: external NATS (URL in a
// Secret) and S3, Slack, tokens given, a UI URL.
const custom = `
uiURL: https://crashes.example.com
image:
  tag: "1.4.2"
nats:
  enabled: false
  existingSecret: nats-url
minio:
  enabled: false
s3:
  url: s3://crash-dumps/prod?endpoint=s3.eu-west-1.amazonaws.com
  existingSecret: crash-dumps-s3
api:
  tokens:
    - "0123456789abcdef viewer"
    - "fedcba9876543210 admin"
notifier:
  enabled: true
  slack:
    webhook: https://hooks.slack.com/services/T000/B000/XXXX
agent:
  force: true
  maxCoreSize: 2147483648
  nodeSelector:
    kubernetes.io/os: linux
`

func TestChartRenders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		kinds  map[string]int
	}{
		{"default", nil, map[string]int{
			// The API's, MinIO's, NATS's and the NATS servers' own
			// (headless, for a cluster's routes).
			"DaemonSet": 1, "Deployment": 2, "StatefulSet": 2, "Service": 4,
			// MinIO's root, the API's tokens, and the agent's, analyzer's
			// and API's own MinIO and NATS users.
			"Secret": 5,
			// NATS's users, and the job that makes MinIO's.
			"ConfigMap": 2, "Job": 1,
			"ServiceAccount": 2, "ClusterRole": 1, "ClusterRoleBinding": 1,
			// The API's index.
			"PersistentVolumeClaim": 1,
		}},
		{"custom", []string{custom}, map[string]int{
			// The API's index and the notifier's state; the notifier runs
			// in the API's pod, no Deployment of its own.
			"DaemonSet": 1, "Deployment": 2, "Service": 1, "Secret": 2, "PersistentVolumeClaim": 2,
			"ServiceAccount": 2, "ClusterRole": 1, "ClusterRoleBinding": 1,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderObjects(t, tc.values...)
			kinds := map[string]int{}
			for _, o := range objs {
				gvks, _, err := scheme.Scheme.ObjectKinds(o)
				if err != nil {
					t.Fatal(err)
				}
				kinds[gvks[0].Kind]++
				name := o.(interface{ GetName() string }).GetName()
				if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
					t.Errorf("%s %q: %v", gvks[0].Kind, name, errs)
				}
			}
			if !reflect.DeepEqual(kinds, tc.kinds) {
				t.Errorf("rendered %v, want %v", kinds, tc.kinds)
			}
			checkPods(t, objs)
			checkReferences(t, objs, "nats-url", "crash-dumps-s3")
		})
	}
}

// checkPods holds every container to limits, probes, and — but for the
// agent — no root and a read-only root filesystem.
func checkPods(t *testing.T, objs []runtime.Object) {
	t.Helper()
	for component, w := range workloads(objs) {
		spec := w.pod.Spec
		for _, c := range spec.Containers {
			where := w.kind + " " + w.name + "/" + c.Name
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				t.Errorf("%s: no memory limit", where)
			}
			if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
				t.Errorf("%s: no CPU request", where)
			}
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s: liveness %v, readiness %v", where, c.LivenessProbe, c.ReadinessProbe)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: root filesystem not read-only", where)
			}
			if component == "agent" {
				continue
			}
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: may run as root or escalate: %+v", where, sc)
			}
			if spec.HostPID || spec.HostNetwork {
				t.Errorf("%s: host namespaces", where)
			}
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					t.Errorf("%s: host path %s", where, v.HostPath.Path)
				}
			}
		}
	}
}

// checkReferences checks that every Secret, ServiceAccount and PVC a pod
// names is rendered, or is one of the given pre-existing Secrets.
func checkReferences(t *testing.T, objs []runtime.Object, existing ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, s := range ofType[*corev1.Secret](objs) {
		have["Secret/"+s.Name] = true
	}
	for _, e := range existing {
		have["Secret/"+e] = true
	}
	for _, sa := range ofType[*corev1.ServiceAccount](objs) {
		have["ServiceAccount/"+sa.Name] = true
	}
	for _, p := range ofType[*corev1.PersistentVolumeClaim](objs) {
		have["PersistentVolumeClaim/"+p.Name] = true
	}
	for _, w := range workloads(objs) {
		spec := w.pod.Spec
		var refs []string
		refs = append(refs, "ServiceAccount/"+spec.ServiceAccountName)
		for _, v := range spec.Volumes {
			if v.Secret != nil {
				refs = append(refs, "Secret/"+v.Secret.SecretName)
			}
			if v.PersistentVolumeClaim != nil {
				refs = append(refs, "PersistentVolumeClaim/"+v.PersistentVolumeClaim.ClaimName)
			}
		}
		for _, c := range spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					refs = append(refs, "Secret/"+e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
		for _, r := range refs {
			if !have[r] {
				t.Errorf("%s %s refers to %s, which is not rendered", w.kind, w.name, r)
			}
		}
	}
}

func TestChartRBACIsLeastPrivilege(t *testing.T) {
	objs := renderObjects(t)
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
	}
	roles := ofType[*rbacv1.ClusterRole](objs)
	if len(roles) != 1 || len(ofType[*rbacv1.Role](objs)) != 0 || len(ofType[*rbacv1.RoleBinding](objs)) != 0 {
		t.Fatalf("%d cluster roles, %d roles", len(roles), len(ofType[*rbacv1.Role](objs)))
	}
	if !reflect.DeepEqual(roles[0].Rules, want) {
		t.Errorf("agent rules %+v\nwant %+v", roles[0].Rules, want)
	}
	bindings := ofType[*rbacv1.ClusterRoleBinding](objs)
	if len(bindings) != 1 || bindings[0].RoleRef.Name != roles[0].Name ||
		!reflect.DeepEqual(bindings[0].Subjects, []rbacv1.Subject{{Kind: "ServiceAccount", Name: release + "-corepipe-agent", Namespace: namespace}}) {
		t.Fatalf("bindings %+v", bindings)
	}
	// Only the agent's pods carry a token of that account; the others none.
	for component, w := range workloads(objs) {
		sa := w.pod.Spec.ServiceAccountName
		if (sa == release+"-corepipe-agent") != (component == "agent") {
			t.Errorf("%s runs as %q", w.name, sa)
		}
	}
	for _, sa := range ofType[*corev1.ServiceAccount](objs) {
		if sa.Name != release+"-corepipe-agent" && (sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken) {
			t.Errorf("service account %s mounts a token", sa.Name)
		}
	}
}

func TestChartAgent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
	}{{"default", nil}, {"custom", []string{custom}}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderObjects(t, tc.values...)
			w := workloads(objs)["agent"]
			if w.kind != "DaemonSet" {
				t.Fatalf("agent is a %q", w.kind)
			}
			spec := w.pod.Spec
			if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
				return t.Operator == corev1.TolerationOpExists && t.Key == "" && t.Effect == ""
			}) {
				t.Errorf("does not tolerate every taint: %+v", spec.Tolerations)
			}
			c := spec.Containers[0]
			flags := flagsOf(t, c.Args[1:])
			// core_pattern names the spool and the collector by host path,
			// and the links in /var/log/containers name /var/log/pods by
			// host path: every host directory is mounted at its own path.
			mounts := hostMounts(t, spec, c)
			want := map[string]bool{"/var/lib/corepipe": false, "/var/lib/corepipe/crash-output": false,
				"/var/log/pods": true, "/var/log/containers": true,
				"/sys/fs/pstore": false, "/var/lib/systemd/pstore": true, "/var/crash": true}
			if !reflect.DeepEqual(mounts, want) {
				t.Fatalf("host paths mounted (path: read-only) %v, want %v", mounts, want)
			}
			dir := "/var/lib/corepipe"
			for flag, want := range map[string]string{"--crash-output-dir": dir + "/crash-output",
				"--pod-logs": "/var/log/pods", "--container-logs": "/var/log/containers",
				"--pstore": "/sys/fs/pstore", "--systemd-pstore": "/var/lib/systemd/pstore", "--kdump": "/var/crash"} {
				if flags[flag] != want {
					t.Errorf("%s=%q, want %q", flag, flags[flag], want)
				}
			}
			for flag, want := range map[string]string{"--spool": dir + "/spool", "--install-collector-to": dir + "/bin", "--state": dir + "/core_pattern.state"} {
				if flags[flag] != want {
					t.Errorf("%s=%q, want %q", flag, flags[flag], want)
				}
			}
			for _, f := range []string{"--install-handler", "--kube", "--metrics-listen", "--blob"} {
				if _, ok := flags[f]; !ok {
					t.Errorf("agent without %s: %q", f, c.Args)
				}
			}
			if tc.name == "custom" && (flags["--ui-url"] != "https://crashes.example.com" || flags["--force"] != "" || flags["--max-core-size"] != "2147483648") {
				t.Errorf("custom agent flags %v", flags)
			}
			var node bool
			for _, e := range c.Env {
				if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
					node = true
				}
			}
			if !node {
				t.Errorf("NODE_NAME not from spec.nodeName: %+v", c.Env)
			}
			if sc := c.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged || spec.HostPID || spec.HostNetwork {
				t.Errorf("agent security: %+v, hostPID %v, hostNetwork %v", sc, spec.HostPID, spec.HostNetwork)
			}
		})
	}
}

// hostMounts maps each host path the container mounts to whether the mount
// is read-only, failing the test when one is mounted at another path.
func hostMounts(t *testing.T, spec corev1.PodSpec, c corev1.Container) map[string]bool {
	t.Helper()
	host := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			host[v.Name] = v.HostPath.Path
		}
	}
	out := map[string]bool{}
	for _, m := range c.VolumeMounts {
		p, ok := host[m.Name]
		if !ok {
			continue
		}
		if m.MountPath != p {
			t.Errorf("host path %s mounted at %s", p, m.MountPath)
		}
		out[p] = m.ReadOnly
	}
	return out
}

func TestChartAgentLogsAndCrashFilesOff(t *testing.T) {
	objs := renderObjects(t, "agent:\n  crashOutputDir: \"\"\n  podLogs: \"\"\n  containerLogs: \"\"\n  pstore: \"\"\n  systemdPstore: \"\"\n  kdump: \"\"\n")
	w := workloads(objs)["agent"]
	c := w.pod.Spec.Containers[0]
	if mounts := hostMounts(t, w.pod.Spec, c); !reflect.DeepEqual(mounts, map[string]bool{"/var/lib/corepipe": false}) {
		t.Errorf("host paths %v, want only the agent's own", mounts)
	}
	flags := flagsOf(t, c.Args[1:])
	for _, f := range []string{"--crash-output-dir", "--pod-logs", "--container-logs", "--pstore", "--systemd-pstore", "--kdump"} {
		if v, ok := flags[f]; !ok || v != "" {
			t.Errorf("%s=%q (set: %v), want it set empty, which turns it off", f, v, ok)
		}
	}
}

func TestChartExternalServices(t *testing.T) {
	objs := renderObjects(t, custom)
	for component, w := range workloads(objs) {
		c := w.pod.Spec.Containers[0]
		flags := flagsOf(t, c.Args[1:])
		if _, ok := flags["--nats"]; ok {
			t.Errorf("%s: the NATS URL holds credentials but is on the command line", component)
		}
		if !strings.HasPrefix(c.Image, "ghcr.io/corepipe/") || !strings.HasSuffix(c.Image, ":1.4.2") {
			t.Errorf("%s: image %s", component, c.Image)
		}
		if b, ok := flags["--blob"]; ok && b != "s3://crash-dumps/prod?endpoint=s3.eu-west-1.amazonaws.com" {
			t.Errorf("%s: --blob=%s", component, b)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				env[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			}
		}
		if env["COREPIPE_NATS"] != "nats-url/url" {
			t.Errorf("%s: COREPIPE_NATS from %q", component, env["COREPIPE_NATS"])
		}
		if component == "notifier" {
			if env["COREPIPE_SLACK_WEBHOOK"] != release+"-corepipe-slack/webhook" || flags["--ui-url"] != "https://crashes.example.com" {
				t.Errorf("notifier env %v flags %v", env, flags)
			}
		} else if env["AWS_SECRET_ACCESS_KEY"] != "crash-dumps-s3/AWS_SECRET_ACCESS_KEY" {
			t.Errorf("%s: S3 credentials from %q", component, env["AWS_SECRET_ACCESS_KEY"])
		}
	}
	for _, s := range ofType[*corev1.Secret](objs) {
		if s.Name == release+"-corepipe-auth" && s.StringData["tokens"] != "0123456789abcdef viewer\nfedcba9876543210 admin\n" {
			t.Errorf("tokens %q", s.StringData["tokens"])
		}
	}
}

func TestChartRequiresStorage(t *testing.T) {
	_, err := render(t, "minio:\n  enabled: false\ns3:\n  existingSecret: s3\n")
	if err == nil || !strings.Contains(err.Error(), "s3.url is required") {
		t.Errorf("without MinIO or s3.url: %v", err)
	}
	_, err = render(t, "nats:\n  enabled: false\n")
	if err == nil || !strings.Contains(err.Error(), "nats.url or nats.existingSecret is required") {
		t.Errorf("without NATS or nats.url: %v", err)
	}
}

// flagsOf maps "--flag=value" and "--flag" arguments to their values.
func flagsOf(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q is not a --flag: one token per flag, please", a)
			continue
		}
		name, value, _ := strings.Cut(a, "=")
		out[name] = value
	}
	return out
}

// TestChartKeepsTriage: the API's index is on a claim of its own. The
// triage decisions (resolved, ignored, assignees, their history) live only
// in the index file; on an emptyDir every helm upgrade, which replaces the
// pod, lost them, while --rebuild refilled the crashes as if nobody had
// looked at them.
func TestChartKeepsTriage(t *testing.T) {
	objs := renderObjects(t, "api:\n  storage: 3Gi\n  storageClassName: fast\n")
	api, ok := workloads(objs)["api"]
	if !ok {
		t.Fatal("no api workload")
	}
	var claim string
	for _, v := range api.pod.Spec.Volumes {
		if v.Name == "data" && v.PersistentVolumeClaim != nil {
			claim = v.PersistentVolumeClaim.ClaimName
		}
	}
	mounted := false
	for _, m := range api.pod.Spec.Containers[0].VolumeMounts {
		mounted = mounted || m.Name == "data" && m.MountPath == "/data"
	}
	if claim == "" || !mounted || !slices.Contains(api.pod.Spec.Containers[0].Args, "--db=/data/index.db") {
		t.Fatal("the index at /data/index.db is not on a persistent volume claim")
	}
	for _, p := range ofType[*corev1.PersistentVolumeClaim](objs) {
		if p.Name != claim {
			continue
		}
		if got := p.Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "3Gi" || p.Spec.StorageClassName == nil || *p.Spec.StorageClassName != "fast" {
			t.Errorf("claim %s: %v of class %v, want 3Gi of fast", claim, got.String(), p.Spec.StorageClassName)
		}
		return
	}
	t.Errorf("claim %s is not rendered", claim)
}

// TestChartNotifierReadsTriage: the notifier runs in the API's pod and
// reads the API's own index file, so that ignored groups stay silent and
// resolved ones speak when they regress. On its own pod it had no index
// and so no triage.
func TestChartNotifierReadsTriage(t *testing.T) {
	w := workloads(renderObjects(t, withNotifier))
	api, notifier := w["api"], w["notifier"]
	if notifier.name != api.name+"/notifier" {
		t.Fatalf("the notifier runs in %s, not in the API's %s", notifier.name, api.name)
	}
	// The file the API's --db names, as the notifier's container sees it.
	db := flagsOf(t, api.pod.Spec.Containers[0].Args[1:])["--db"]
	index := flagsOf(t, notifier.pod.Spec.Containers[0].Args[1:])["--index"]
	at := func(c corev1.Container, file string) string {
		for _, m := range c.VolumeMounts {
			if rest, ok := strings.CutPrefix(file, m.MountPath+"/"); ok {
				return m.Name + ":" + rest
			}
		}
		return "(on no volume)"
	}
	if db == "" || index == "" || at(api.pod.Spec.Containers[0], db) != at(notifier.pod.Spec.Containers[0], index) {
		t.Errorf("API --db %s at %s, notifier --index %s at %s", db, at(api.pod.Spec.Containers[0], db), index, at(notifier.pod.Spec.Containers[0], index))
	}
}

// TestChartRules: api.owners and notifier.slack.mentions reach the API and
// the notifier as the files their --owners and --slack-mentions read, and
// a change of them starts a new pod (they are read at start).
func TestChartRules(t *testing.T) {
	values := withNotifier + "    mentions: team-api S0123ABCD\napi:\n  owners: |\n    main. team-api\n"
	objs := renderObjects(t, values)
	var data map[string]string
	for _, cm := range ofType[*corev1.ConfigMap](objs) {
		if cm.Name == release+"-corepipe-rules" {
			data = cm.Data
		}
	}
	if data["owners"] != "main. team-api\n" || data["mentions"] != "team-api S0123ABCD" {
		t.Fatalf("rules ConfigMap %q", data)
	}
	w := workloads(objs)
	for part, want := range map[string][]string{
		"api":      {"--owners=/etc/corepipe/rules/owners"},
		"notifier": {"--owners=/etc/corepipe/rules/owners", "--slack-mentions=/etc/corepipe/rules/mentions"},
	} {
		c := w[part].pod.Spec.Containers[0]
		for _, arg := range want {
			if !slices.Contains(c.Args, arg) {
				t.Errorf("%s: args %q lack %s", part, c.Args, arg)
			}
		}
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "rules" && m.MountPath == "/etc/corepipe/rules" }) {
			t.Errorf("%s: the rules are not mounted: %+v", part, c.VolumeMounts)
		}
	}
	before := w["api"].pod.Annotations["checksum/rules"]
	after := workloads(renderObjects(t, values+"    lib/ team-lib\n"))["api"].pod.Annotations["checksum/rules"]
	if before == "" || before == after {
		t.Errorf("checksum/rules %q, then %q: new rules must start a new pod", before, after)
	}
	for _, p := range workloads(renderObjects(t, withNotifier))["api"].pod.Spec.Volumes {
		if p.Name == "rules" {
			t.Error("a rules volume without rules")
		}
	}
}

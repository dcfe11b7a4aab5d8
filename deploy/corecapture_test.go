package deploy_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/corepipe/corepipe/internal/testkit/kubetest"
)

const coreCaptureOn = "coreCapture:\n  admissionPolicy:\n    enabled: true\n"

// corePolicy renders the chart with the admission policy on and returns the
// policy and its binding.
func corePolicy(t *testing.T, values ...string) (*admissionv1.MutatingAdmissionPolicy, *admissionv1.MutatingAdmissionPolicyBinding) {
	t.Helper()
	objs := renderObjects(t, append([]string{coreCaptureOn}, values...)...)
	policies := ofType[*admissionv1.MutatingAdmissionPolicy](objs)
	bindings := ofType[*admissionv1.MutatingAdmissionPolicyBinding](objs)
	if len(policies) != 1 || len(bindings) != 1 {
		t.Fatalf("%d policies, %d bindings", len(policies), len(bindings))
	}
	return policies[0], bindings[0]
}

func TestChartCoreCaptureOffByDefault(t *testing.T) {
	manifest, err := render(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"MutatingAdmissionPolicy", "ClusterPolicy"} {
		if strings.Contains(manifest, "kind: "+kind) {
			t.Errorf("a default install changes workloads: it renders a %s", kind)
		}
	}
}

func TestChartCoreCapturePolicyRenders(t *testing.T) {
	p, b := corePolicy(t)
	if b.Spec.PolicyName != p.Name {
		t.Errorf("binding names policy %q, policy is %q", b.Spec.PolicyName, p.Name)
	}
	mc := p.Spec.MatchConstraints
	if mc == nil || len(mc.ResourceRules) != 1 {
		t.Fatalf("match constraints %+v", mc)
	}
	r := mc.ResourceRules[0]
	if !slices.Equal(r.Operations, []admissionv1.OperationType{admissionv1.Create}) ||
		!slices.Equal(r.Resources, []string{"pods"}) || !slices.Equal(r.APIGroups, []string{""}) {
		t.Errorf("rule %+v: want CREATE of core pods only", r)
	}
	if mc.ObjectSelector == nil || len(mc.ObjectSelector.MatchLabels) != 1 || mc.ObjectSelector.MatchLabels["corepipe.dev/capture"] != "core" {
		t.Errorf("object selector %+v: want only pods labelled corepipe.dev/capture=core", mc.ObjectSelector)
	}
	if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionv1.Ignore {
		t.Errorf("failure policy %v, want Ignore by default", p.Spec.FailurePolicy)
	}
	var types []admissionv1.PatchType
	for _, m := range p.Spec.Mutations {
		types = append(types, m.PatchType)
	}
	if !slices.Equal(types, []admissionv1.PatchType{admissionv1.PatchTypeApplyConfiguration, admissionv1.PatchTypeJSONPatch}) {
		t.Errorf("mutations %v", types)
	}

	// The selector follows the values.
	p, _ = corePolicy(t, "coreCapture:\n  labelKey: example.com/cores\n  labelValue: \"yes\"\n  admissionPolicy:\n    failurePolicy: Fail\n")
	if sel := p.Spec.MatchConstraints.ObjectSelector.MatchLabels; len(sel) != 1 || sel["example.com/cores"] != "yes" {
		t.Errorf("selector %v, want example.com/cores=yes", sel)
	}
	if *p.Spec.FailurePolicy != admissionv1.Fail {
		t.Errorf("failure policy %v, want Fail", *p.Spec.FailurePolicy)
	}
}

// TestChartCoreCaptureKyverno checks the Kyverno alternative as rendered
// only: no Kyverno runs here, so what it patches is not tested.
func TestChartCoreCaptureKyverno(t *testing.T) {
	manifest, err := render(t, "coreCapture:\n  kyverno:\n    enabled: true\n")
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Background *bool `json:"background"`
			Rules      []struct {
				Name  string `json:"name"`
				Match struct {
					Any []struct {
						Resources struct {
							Kinds      []string `json:"kinds"`
							Operations []string `json:"operations"`
							Selector   struct {
								MatchLabels map[string]string `json:"matchLabels"`
							} `json:"selector"`
						} `json:"resources"`
					} `json:"any"`
				} `json:"match"`
				Preconditions struct {
					All []struct {
						Key      string `json:"key"`
						Operator string `json:"operator"`
						Value    any    `json:"value"`
					} `json:"all"`
				} `json:"preconditions"`
				Mutate struct {
					PatchStrategicMerge struct {
						Spec struct {
							ShareProcessNamespace *bool `json:"shareProcessNamespace"`
							Containers            []struct {
								Name string          `json:"(name)"`
								Env  []corev1.EnvVar `json:"env"`
							} `json:"containers"`
						} `json:"spec"`
					} `json:"patchStrategicMerge"`
				} `json:"mutate"`
			} `json:"rules"`
		} `json:"spec"`
	}
	var found int
	for doc := range strings.SplitSeq(manifest, "\n---\n") {
		if !strings.Contains(doc, "kind: ClusterPolicy") {
			continue
		}
		found++
		// Not strict: only the fields checked below are declared.
		if err := yaml.Unmarshal([]byte(doc), &policy); err != nil {
			t.Fatalf("ClusterPolicy:\n%s\n%v", doc, err)
		}
	}
	if found != 1 || policy.APIVersion != "kyverno.io/v1" {
		t.Fatalf("%d ClusterPolicies, apiVersion %q", found, policy.APIVersion)
	}
	if policy.Spec.Background == nil || *policy.Spec.Background {
		t.Error("background: a mutation of pods on CREATE has nothing to do in the background")
	}
	var env, share bool
	for _, r := range policy.Spec.Rules {
		if len(r.Match.Any) != 1 {
			t.Fatalf("rule %s matches %d resource sets", r.Name, len(r.Match.Any))
		}
		res := r.Match.Any[0].Resources
		if !slices.Equal(res.Kinds, []string{"Pod"}) || !slices.Equal(res.Operations, []string{"CREATE"}) ||
			len(res.Selector.MatchLabels) != 1 || res.Selector.MatchLabels["corepipe.dev/capture"] != "core" {
			t.Errorf("rule %s matches %+v", r.Name, res)
		}
		spec := r.Mutate.PatchStrategicMerge.Spec
		for _, c := range spec.Containers {
			if c.Name == "*" && slices.Equal(c.Env, []corev1.EnvVar{{Name: "GOTRACEBACK", Value: "crash"}}) {
				env = true
			}
		}
		if spec.ShareProcessNamespace != nil && *spec.ShareProcessNamespace {
			share = true
			pre := r.Preconditions.All
			if len(pre) != 1 || !strings.Contains(pre[0].Key, "request.object.spec.hostPID") || pre[0].Value != false {
				t.Errorf("shareProcessNamespace without the hostPID precondition: %+v", pre)
			}
		}
	}
	if !env || !share {
		t.Errorf("GOTRACEBACK=crash in every container %v, shareProcessNamespace %v", env, share)
	}
}

// TestChartCoreCapturePolicyMutatesPods applies the rendered policy and
// binding to a real API server and creates pods: the labelled ones come back
// mutated, the others as they were sent.
func TestChartCoreCapturePolicyMutatesPods(t *testing.T) {
	policy, binding := corePolicy(t)
	s := kubetest.Start(t)
	client := s.Client()
	ctx := context.Background()
	const ns = "shop"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	adm := client.AdmissionregistrationV1()
	if _, err := adm.MutatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the chart's MutatingAdmissionPolicy: %v", err)
	}
	if _, err := adm.MutatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the chart's MutatingAdmissionPolicyBinding: %v", err)
	}
	waitForPolicy(t, client, ns)

	labelled := newPod("web", map[string]string{"corepipe.dev/capture": "core", "app": "web"},
		corev1.Container{Name: "app", Image: "example.com/web:1", Env: []corev1.EnvVar{{Name: "GOTRACEBACK", Value: "all"}, {Name: "PORT", Value: "8080"}}},
		corev1.Container{Name: "sidecar", Image: "example.com/proxy:1"})
	got := createPod(t, client, ns, labelled)
	if sp := got.Spec.ShareProcessNamespace; sp == nil || !*sp {
		t.Errorf("labelled pod: shareProcessNamespace %v, want true", sp)
	}
	for _, c := range got.Spec.Containers {
		if v, n := envValue(c, "GOTRACEBACK"); v != "crash" || n != 1 {
			t.Errorf("labelled pod, container %s: GOTRACEBACK=%q (%d times), want crash once: %+v", c.Name, v, n, c.Env)
		}
	}
	if v, _ := envValue(got.Spec.Containers[0], "PORT"); v != "8080" {
		t.Errorf("labelled pod lost its own env: %+v", got.Spec.Containers[0].Env)
	}

	other := newPod("batch", map[string]string{"corepipe.dev/capture": "none"},
		corev1.Container{Name: "job", Image: "example.com/job:1", Env: []corev1.EnvVar{{Name: "GOTRACEBACK", Value: "single"}}})
	plain := newPod("db", nil, corev1.Container{Name: "db", Image: "example.com/db:1"})
	for _, p := range []*corev1.Pod{other, plain} {
		got := createPod(t, client, ns, p)
		if got.Spec.ShareProcessNamespace != nil {
			t.Errorf("pod %s (labels %v): shareProcessNamespace set to %v", p.Name, p.Labels, *got.Spec.ShareProcessNamespace)
		}
		if !slices.Equal(got.Spec.Containers[0].Env, p.Spec.Containers[0].Env) {
			t.Errorf("pod %s (labels %v): env %+v, sent %+v", p.Name, p.Labels, got.Spec.Containers[0].Env, p.Spec.Containers[0].Env)
		}
	}

	// With the host's PID namespace the program is not PID 1, and the API
	// refuses shareProcessNamespace with it: only the env is set.
	host := newPod("node-tool", map[string]string{"corepipe.dev/capture": "core"}, corev1.Container{Name: "tool", Image: "example.com/tool:1"})
	host.Spec.HostPID = true
	got = createPod(t, client, ns, host)
	if got.Spec.ShareProcessNamespace != nil && *got.Spec.ShareProcessNamespace {
		t.Error("hostPID pod: shareProcessNamespace set")
	}
	if v, _ := envValue(got.Spec.Containers[0], "GOTRACEBACK"); v != "crash" {
		t.Errorf("hostPID pod: GOTRACEBACK=%q, want crash", v)
	}
}

// waitForPolicy waits until the API server applies the new policy, which it
// loads asynchronously, probing with dry-run creates that store nothing.
func waitForPolicy(t *testing.T, client kubernetes.Interface, ns string) {
	t.Helper()
	probe := newPod("probe", map[string]string{"corepipe.dev/capture": "core"}, corev1.Container{Name: "probe", Image: "example.com/probe:1"})
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := client.CoreV1().Pods(ns).Create(context.Background(), probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("dry-run create: %v", err)
		}
		if got.Spec.ShareProcessNamespace != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the API server did not apply the policy within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newPod(name string, labels map[string]string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		// Straight onto a node: no scheduler runs here.
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: containers},
	}
}

func createPod(t *testing.T, client kubernetes.Interface, ns string, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	return got
}

// envValue is the value of the variable name in c and how many times c
// sets it.
func envValue(c corev1.Container, name string) (string, int) {
	var v string
	var n int
	for _, e := range c.Env {
		if e.Name == name {
			v, n = e.Value, n+1
		}
	}
	return v, n
}

package deploy_test

import (
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// receiverRules are what the netconsole receiver needs of the API (kube's
// TestRealServerKernelPanicTellsPods runs with exactly these).
var receiverRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
}

func TestChartKpanicOffByDefault(t *testing.T) {
	objs := renderObjects(t)
	if _, ok := workloads(objs)["kpanic"]; ok {
		t.Error("the netconsole receiver is rendered by default")
	}
}

func TestChartKpanic(t *testing.T) {
	objs := renderObjects(t, "uiURL: https://crashes.example.com\nkpanic:\n  enabled: true\n")
	w, ok := workloads(objs)["kpanic"]
	if !ok {
		t.Fatal("no receiver rendered")
	}
	sa := release + "-corepipe-kpanic"
	if w.pod.Spec.ServiceAccountName != sa {
		t.Errorf("receiver runs as %q", w.pod.Spec.ServiceAccountName)
	}
	c := w.pod.Spec.Containers[0]
	for _, arg := range []string{"kpanic", "--listen=udp://0.0.0.0:6666", "--kube", "--ui-url=https://crashes.example.com"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %q lack %s", c.Args, arg)
		}
	}
	// It records crashes as an agent does, with the agent's credentials.
	secrets := func(c corev1.Container) map[string]string {
		out := map[string]string{}
		for _, e := range c.Env {
			if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
				out[e.Name] = ref.SecretKeyRef.Name
			}
		}
		return out
	}
	agent := workloads(objs)["agent"].pod.Spec.Containers[0]
	if got, want := secrets(c), secrets(agent); len(got) == 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("receiver's secrets %v, want the agent's %v", got, want)
	}

	var role *rbacv1.ClusterRole
	for _, r := range ofType[*rbacv1.ClusterRole](objs) {
		if r.Name == sa {
			role = r
		}
	}
	if role == nil || !reflect.DeepEqual(role.Rules, receiverRules) {
		t.Fatalf("receiver's role %+v\nwant rules %+v", role, receiverRules)
	}
	bound := false
	for _, b := range ofType[*rbacv1.ClusterRoleBinding](objs) {
		if b.RoleRef.Name == sa {
			bound = reflect.DeepEqual(b.Subjects, []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: namespace}})
		}
	}
	if !bound {
		t.Error("the receiver's role is not bound to its service account alone")
	}

	var svc *corev1.Service
	for _, s := range ofType[*corev1.Service](objs) {
		if s.Name == sa {
			svc = s
		}
	}
	if svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 1 ||
		svc.Spec.Ports[0].Protocol != corev1.ProtocolUDP || svc.Spec.Ports[0].Port != 6666 {
		t.Errorf("receiver's service %+v", svc)
	}

	// Without --kube it needs no token at all.
	objs = renderObjects(t, "kpanic:\n  enabled: true\n  kube: false\n")
	w = workloads(objs)["kpanic"]
	if w.pod.Spec.ServiceAccountName != release+"-corepipe" || slices.Contains(w.pod.Spec.Containers[0].Args, "--kube") {
		t.Errorf("without kube: runs as %q with %q", w.pod.Spec.ServiceAccountName, w.pod.Spec.Containers[0].Args)
	}
	for _, r := range ofType[*rbacv1.ClusterRole](objs) {
		if r.Name == sa {
			t.Error("a role for a receiver that does not use the API")
		}
	}
}

func TestChartAgentNetconsole(t *testing.T) {
	has := func(w workload, arg string) bool { return slices.Contains(w.pod.Spec.Containers[0].Args, arg) }
	volumes := func(w workload) map[string]string {
		out := map[string]string{}
		for _, v := range w.pod.Spec.Volumes {
			if v.HostPath != nil {
				out[v.Name] = v.HostPath.Path
			}
		}
		return out
	}
	agent := workloads(renderObjects(t))["agent"]
	if has(agent, "--netconsole-configfs=/host/configfs") || volumes(agent)["configfs"] != "" {
		t.Error("netconsole set up by default")
	}
	agent = workloads(renderObjects(t, "agent:\n  netconsole:\n    receiver: udp://10.0.0.9:6666\n    mac: 02:00:00:00:00:01\n"))["agent"]
	for _, arg := range []string{"--netconsole=udp://10.0.0.9:6666", "--netconsole-configfs=/host/configfs", "--netconsole-proc=/host/proc/1", "--netconsole-mac=02:00:00:00:00:01"} {
		if !has(agent, arg) {
			t.Errorf("agent args %q lack %s", agent.pod.Spec.Containers[0].Args, arg)
		}
	}
	if v := volumes(agent); v["configfs"] != "/sys/kernel/config" || v["host-proc"] != "/proc" {
		t.Errorf("agent host volumes %v", v)
	}
}

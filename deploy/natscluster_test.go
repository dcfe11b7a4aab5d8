package deploy_test

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// nats.replicas: 3 makes the bundled NATS a JetStream cluster — three
// servers started together, routed through a headless Service by their pod
// names — and every part creates its streams and buckets with 3 replicas.
func TestChartNATSCluster(t *testing.T) {
	for _, tc := range []struct {
		values   string
		servers  int32
		replicas string
	}{
		{"", 1, "1"},
		{"nats:\n  replicas: 3\n", 3, "3"},
		{"nats:\n  replicas: 5\n", 5, "3"},
		{"nats:\n  enabled: false\n  url: nats://a:4222,nats://b:4222,nats://c:4222\n  streamReplicas: 3\n", 0, "3"},
	} {
		objs := renderObjects(t, tc.values)
		var sts *appsv1.StatefulSet
		for _, s := range ofType[*appsv1.StatefulSet](objs) {
			if s.Name == release+"-corepipe-nats" {
				sts = s
			}
		}
		switch {
		case tc.servers == 0 && sts != nil:
			t.Errorf("%q: a bundled NATS without nats.enabled", tc.values)
		case tc.servers > 0 && (sts == nil || *sts.Spec.Replicas != tc.servers || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement):
			t.Errorf("%q: NATS StatefulSet %+v, want %d servers started in parallel", tc.values, sts, tc.servers)
		}
		if tc.servers > 1 {
			var conf string
			for _, cm := range ofType[*corev1.ConfigMap](objs) {
				if cm.Name == release+"-corepipe-nats" {
					conf = cm.Data["nats.conf"]
				}
			}
			for i := range tc.servers {
				route := "nats://" + release + "-corepipe-nats-" + string(rune('0'+i)) + "." + release + "-corepipe-nats-cluster:6222"
				if !strings.Contains(conf, route) {
					t.Errorf("%q: nats.conf has no route %s:\n%s", tc.values, route, conf)
				}
			}
			if !strings.Contains(conf, "server_name: $POD_NAME") || !strings.Contains(conf, "authorization {") {
				t.Errorf("%q: nats.conf:\n%s", tc.values, conf)
			}
			args := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " ")
			if !strings.Contains(args, "--config=/etc/nats/nats.conf") {
				t.Errorf("%q: nats args %s", tc.values, args)
			}
			headless := false
			for _, s := range ofType[*corev1.Service](objs) {
				headless = headless || (s.Name == sts.Spec.ServiceName && s.Spec.ClusterIP == corev1.ClusterIPNone)
			}
			if !headless {
				t.Errorf("%q: no headless Service %s for the routes", tc.values, sts.Spec.ServiceName)
			}
		}
		for component, w := range workloads(objs) {
			if component == "nats" || component == "minio" {
				continue
			}
			flags := flagsOf(t, w.pod.Spec.Containers[0].Args[1:])
			if got, ok := flags["--nats-replicas"]; ok && got != tc.replicas {
				t.Errorf("%q: %s --nats-replicas=%s, want %s", tc.values, component, got, tc.replicas)
			} else if !ok && component != "core-capture" {
				t.Errorf("%q: %s has no --nats-replicas", tc.values, component)
			}
		}
	}
}

package deploy_test

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/corepipe/corepipe/analyzer"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// scaledObject is every field the chart sets in KEDA's ScaledObject
// (keda.sh/v1alpha1), decoded strictly: a field misspelt in the template
// fails instead of being ignored by KEDA. No KEDA runs here; the field
// names are those of KEDA's reference and of its nats-jetstream scaler.
type scaledObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Triggers        []struct {
			Type     string `json:"type"`
			Metadata struct {
				NATSServerMonitoringEndpoint string `json:"natsServerMonitoringEndpoint"`
				UseHTTPS                     string `json:"useHttps"`
				Account                      string `json:"account"`
				Stream                       string `json:"stream"`
				Consumer                     string `json:"consumer"`
				LagThreshold                 string `json:"lagThreshold"`
				ActivationLagThreshold       string `json:"activationLagThreshold"`
			} `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// named returns the object of type T called name (nil when there is none).
func named[T interface {
	runtime.Object
	GetName() string
}](objs []runtime.Object, name string) T {
	var none T
	for _, o := range ofType[T](objs) {
		if o.GetName() == name {
			return o
		}
	}
	return none
}

// renderKEDA renders the chart and returns its ScaledObjects and the other
// objects, decoded as objects does.
func renderKEDA(t *testing.T, values string) ([]scaledObject, []runtime.Object) {
	t.Helper()
	manifest, err := render(t, values)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	var scaled []scaledObject
	var rest []string
	for doc := range strings.SplitSeq(manifest, "\n---\n") {
		if !strings.Contains(doc, "\nkind: ScaledObject\n") {
			rest = append(rest, doc)
			continue
		}
		var so scaledObject
		if err := yaml.UnmarshalStrict(stripComments([]byte(doc)), &so); err != nil {
			t.Fatalf("ScaledObject:\n%s\n%v", doc, err)
		}
		scaled = append(scaled, so)
	}
	return scaled, objects(t, strings.Join(rest, "\n---\n"))
}

// With analyzer.autoscaling.keda.enabled the chart adds a KEDA ScaledObject
// whose nats-jetstream trigger names the stream and durable consumer the
// analyzers really read (from the code that names them), reaching a
// monitoring endpoint that serves it; the Deployment then leaves its
// replicas to KEDA's autoscaler, which would otherwise fight the chart on
// every upgrade. Off by default.
func TestChartAnalyzerKEDA(t *testing.T) {
	const on = "analyzer:\n  autoscaling:\n    keda:\n      enabled: true\n"
	bundled := release + "-corepipe-nats." + namespace + ".svc:8222"
	for _, tc := range []struct {
		name, values string
		endpoint     string
		min, max     int32
		lag          string
	}{
		{"off", "", "", 0, 0, ""},
		{"bundled NATS", on, bundled, 1, 10, "4"},
		{"bundled NATS cluster", on + "nats:\n  replicas: 3\n", bundled, 1, 10, "4"},
		{"own NATS", "nats:\n  enabled: false\n  url: nats://nats.infra:4222\n" +
			"analyzer:\n  autoscaling:\n    keda:\n      enabled: true\n      monitoringEndpoint: nats.infra:8222\n" +
			"      minReplicas: 0\n      maxReplicas: 20\n      lagThreshold: 8\n", "nats.infra:8222", 0, 20, "8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scaled, objs := renderKEDA(t, tc.values)
			dep := named[*appsv1.Deployment](objs, release+"-corepipe-analyzer")
			if dep == nil {
				t.Fatal("no analyzer Deployment")
			}
			if tc.endpoint == "" {
				if len(scaled) != 0 || dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
					t.Errorf("%d ScaledObjects, replicas %v; want none and the fixed 2", len(scaled), dep.Spec.Replicas)
				}
				return
			}
			if dep.Spec.Replicas != nil {
				t.Errorf("analyzer Deployment sets replicas %d: KEDA's autoscaler owns them", *dep.Spec.Replicas)
			}
			if len(scaled) != 1 {
				t.Fatalf("%d ScaledObjects, want 1", len(scaled))
			}
			so := scaled[0]
			ref := so.Spec.ScaleTargetRef
			if so.APIVersion != "keda.sh/v1alpha1" || ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != dep.Name {
				t.Errorf("ScaledObject %s targets %+v, want the Deployment %s", so.APIVersion, ref, dep.Name)
			}
			if so.Metadata.Labels["app.kubernetes.io/component"] != "analyzer" {
				t.Errorf("labels %v", so.Metadata.Labels)
			}
			if p := so.Spec; p.MinReplicaCount == nil || *p.MinReplicaCount != tc.min || p.MaxReplicaCount == nil || *p.MaxReplicaCount != tc.max ||
				p.PollingInterval == nil || p.CooldownPeriod == nil {
				t.Errorf("replicas %v..%v polling %v cooldown %v, want %d..%d", p.MinReplicaCount, p.MaxReplicaCount, p.PollingInterval, p.CooldownPeriod, tc.min, tc.max)
			}
			if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "nats-jetstream" {
				t.Fatalf("triggers %+v", so.Spec.Triggers)
			}
			m := so.Spec.Triggers[0].Metadata
			if m.Stream != natsq.CoresStream || m.Consumer != analyzer.DefaultDurable {
				t.Errorf("trigger reads consumer %q of stream %q; the analyzers consume %q of %q", m.Consumer, m.Stream, analyzer.DefaultDurable, natsq.CoresStream)
			}
			if m.NATSServerMonitoringEndpoint != tc.endpoint || m.Account != "$G" || m.UseHTTPS != "false" ||
				m.LagThreshold != tc.lag || m.ActivationLagThreshold != "0" {
				t.Errorf("trigger metadata %+v, want endpoint %s, account $G, lagThreshold %s", m, tc.endpoint, tc.lag)
			}
			if tc.endpoint == bundled {
				checkMonitorService(t, objs)
			}
		})
	}
	if _, err := render(t, on+"      minReplicas: 3\n      maxReplicas: 2\n"); err == nil {
		t.Error("minReplicas above maxReplicas rendered")
	}
	if _, err := render(t, on+"nats:\n  enabled: false\n  url: nats://nats.infra:4222\n"); err == nil || !strings.Contains(err.Error(), "monitoringEndpoint") {
		t.Errorf("own NATS without a monitoring endpoint: %v", err)
	}
}

// checkMonitorService checks that the bundled NATS's Service forwards port
// 8222 to the servers' monitoring port, where the trigger reads /jsz.
func checkMonitorService(t *testing.T, objs []runtime.Object) {
	t.Helper()
	svc := named[*corev1.Service](objs, release+"-corepipe-nats")
	sts := named[*appsv1.StatefulSet](objs, release+"-corepipe-nats")
	if svc == nil || sts == nil {
		t.Fatalf("bundled NATS Service %v, StatefulSet %v", svc != nil, sts != nil)
	}
	var target string
	for _, p := range svc.Spec.Ports {
		if p.Port == 8222 {
			target = p.TargetPort.String()
		}
	}
	served := false
	for _, p := range sts.Spec.Template.Spec.Containers[0].Ports {
		served = served || (p.ContainerPort == 8222 && (p.Name == target || target == "8222"))
	}
	args := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " ")
	if !served || !strings.Contains(args, "--http_port=8222") {
		t.Errorf("Service %s port 8222 → %q; the server serves monitoring %v (args %s)", svc.Name, target, served, args)
	}
}

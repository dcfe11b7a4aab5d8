package deploy_test

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

type compose struct {
	Services map[string]struct {
		Image    string   `json:"image"`
		Command  []string `json:"command"`
		Profiles []string `json:"profiles"`
	} `json:"services"`
}

// deploymentFlags differ between a machine and a cluster by nature: where
// the blob store, the queue and the UI are.
var deploymentFlags = map[string]bool{"--blob": true, "--nats": true, "--ui-url": true}

// TestComposeMatchesChart checks that docker-compose.yaml runs what the
// chart runs: the same images and, for every server, the same subcommand
// and flags with the same values, but for where the services are.
func TestComposeMatchesChart(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	for _, s := range []string{"nats", "minio", "analyzer", "api", "notifier"} {
		if _, ok := c.Services[s]; !ok {
			t.Errorf("no service %s", s)
		}
	}

	// The notifier only renders with Slack configured.
	objs := renderObjects(t, "uiURL: https://crashes.example.com\nnotifier:\n  enabled: true\n  slack:\n    webhook: https://hooks.slack.com/x\n")
	chart := workloads(objs)
	for _, s := range []string{"analyzer", "api", "notifier"} {
		svc := c.Services[s]
		w, ok := chart[s]
		if !ok {
			t.Errorf("chart has no %s", s)
			continue
		}
		ctr := w.pod.Spec.Containers[0]
		if repo(svc.Image) != repo(ctr.Image) {
			t.Errorf("%s: compose image %s, chart %s", s, svc.Image, ctr.Image)
		}
		if len(svc.Command) == 0 || svc.Command[0] != ctr.Args[0] {
			t.Errorf("%s: compose runs %q, chart %q", s, svc.Command, ctr.Args)
			continue
		}
		got, want := flagsOf(t, svc.Command[1:]), flagsOf(t, ctr.Args[1:])
		// The chart gives each part a NATS user of its own, so its URL,
		// which holds the password, comes from a Secret.
		if natsFromSecret(ctr) {
			want["--nats"] = "(from a Secret)"
		}
		for f := range deploymentFlags {
			if _, inChart := want[f]; inChart != hasKey(got, f) {
				t.Errorf("%s: %s in chart %v, in compose %v", s, f, inChart, hasKey(got, f))
			}
			delete(got, f)
			delete(want, f)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s flags:\ncompose %v\nchart   %v", s, got, want)
		}
	}
	// The bundled NATS and MinIO are the same images too.
	for _, s := range []string{"nats", "minio"} {
		w, ok := chart[s]
		if !ok {
			t.Errorf("chart bundles no %s", s)
			continue
		}
		if img := w.pod.Spec.Containers[0].Image; c.Services[s].Image != img {
			t.Errorf("%s: compose image %s, chart %s", s, c.Services[s].Image, img)
		}
		want := w.pod.Spec.Containers[0].Args
		if s == "nats" {
			// The chart's NATS has a user per part, configured in a file;
			// compose's one-machine NATS has none.
			want = slices.DeleteFunc(slices.Clone(want), func(a string) bool { return a == "--config=/etc/nats/nats.conf" })
		}
		if got := c.Services[s].Command; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: compose runs %q, chart %q", s, got, want)
		}
	}
}

func natsFromSecret(c corev1.Container) bool {
	for _, e := range c.Env {
		if e.Name == "COREPIPE_NATS" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return true
		}
	}
	return false
}

// repo is image without its tag ("${COREPIPE_TAG:-latest}" in compose).
func repo(image string) string {
	slash := strings.LastIndex(image, "/") + 1
	if i := strings.Index(image[slash:], ":"); i >= 0 {
		return image[:slash+i]
	}
	return image
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

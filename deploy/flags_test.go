package deploy_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestChartFlagsExist runs the real corepipe with -h for each part the
// chart starts, and checks that it knows every flag the chart passes (and so
// docker-compose.yaml, which TestComposeMatchesChart holds to the same): a
// renamed flag would otherwise only show in a crash-looping pod.
func TestChartFlagsExist(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "corepipe")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/corepipe").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	objs := renderObjects(t, "uiURL: https://crashes.example.com\napi:\n  owners: main. team-api\nnotifier:\n  enabled: true\n  slack:\n    webhook: https://hooks.slack.com/x\n    mentions: team-api S0123ABCD\nkpanic:\n  enabled: true\nagent:\n  netconsole:\n    receiver: udp://10.0.0.9:6666\n    device: eth0\n    mac: 02:00:00:00:00:01\n")
	flagLine := regexp.MustCompile(`(?m)^\s+(?:-[a-z], )?--?([a-z][a-z0-9-]*)`)
	for component, w := range workloads(objs) {
		if component == "nats" || component == "minio" {
			continue
		}
		args := w.pod.Spec.Containers[0].Args
		// -h exits 0 after printing the flags to stderr.
		out, _ := exec.Command(bin, args[0], "-h").CombinedOutput()
		known := map[string]bool{}
		for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
			known["--"+m[1]] = true
		}
		if len(known) == 0 {
			t.Fatalf("corepipe %s -h listed no flags:\n%s", args[0], out)
		}
		for f := range flagsOf(t, args[1:]) {
			if !known[f] {
				t.Errorf("corepipe %s has no flag %s", args[0], f)
			}
		}
	}
}

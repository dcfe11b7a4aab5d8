package deploy_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// secretRefs maps each variable of c that comes from a Secret to
// "secret/key".
func secretRefs(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			out[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	return out
}

func TestChartPerRoleCredentialsBundled(t *testing.T) {
	objs := renderObjects(t, withNotifier)
	secrets := byName[*corev1.Secret](objs)
	w := workloads(objs)
	passwords := map[string]string{}
	for _, role := range natsRoles {
		c := w[role].pod.Spec.Containers[0]
		own := release + "-corepipe-" + role + "-credentials"
		want := map[string]string{"COREPIPE_NATS": own + "/url"}
		if role == "notifier" {
			want["COREPIPE_SLACK_WEBHOOK"] = release + "-corepipe-slack/webhook"
		} else {
			want["AWS_ACCESS_KEY_ID"] = own + "/AWS_ACCESS_KEY_ID"
			want["AWS_SECRET_ACCESS_KEY"] = own + "/AWS_SECRET_ACCESS_KEY"
		}
		if got := secretRefs(c); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: credentials from %v, want %v", role, got, want)
		}
		if _, ok := flagsOf(t, c.Args[1:])["--nats"]; ok {
			t.Errorf("%s: --nats on the command line, beside its user's URL", role)
		}
		s := secrets[own]
		if s == nil {
			t.Fatalf("%s: no Secret %s", role, own)
		}
		pw := s.StringData["nats-password"]
		if len(pw) < 32 || s.StringData["url"] != "nats://"+role+":"+pw+"@"+release+"-corepipe-nats:4222" {
			t.Errorf("%s: NATS password %q, URL %q", role, pw, s.StringData["url"])
		}
		passwords[pw] = role
		if role != "notifier" {
			passwords[s.StringData["AWS_SECRET_ACCESS_KEY"]] = role
			if s.StringData["AWS_ACCESS_KEY_ID"] != "corepipe-"+role {
				t.Errorf("%s: MinIO user %q", role, s.StringData["AWS_ACCESS_KEY_ID"])
			}
		}
	}
	if len(passwords) != 2*len(natsRoles)-1 { // the notifier has no S3 key
		t.Errorf("passwords shared between parts: %v", passwords)
	}

	// Only MinIO itself and its setup job hold the root credentials.
	root := release + "-corepipe-s3/"
	for component, wl := range w {
		for name, ref := range secretRefs(wl.pod.Spec.Containers[0]) {
			if strings.HasPrefix(ref, root) && component != "minio" {
				t.Errorf("%s has the MinIO root credentials in %s", component, name)
			}
		}
	}

	jobs := ofType[*batchv1.Job](objs)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs", len(jobs))
	}
	job := jobs[0]
	if _, ok := job.Annotations["helm.sh/hook"]; ok || job.Name != release+"-corepipe-minio-setup-1" {
		t.Errorf("setup job %s is a hook (%v), or not one per revision", job.Name, job.Annotations)
	}
	spec := job.Spec.Template.Spec
	c := spec.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("setup job security %+v", sc)
	}
	mounted := map[string]string{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			mounted[v.Secret.SecretName] = v.Name
		}
	}
	for _, role := range []string{"agent", "analyzer", "api"} {
		if _, ok := mounted[release+"-corepipe-"+role+"-credentials"]; !ok {
			t.Errorf("setup job does not see %s's key: %v", role, mounted)
		}
	}
	var setup *corev1.ConfigMap
	for _, cm := range ofType[*corev1.ConfigMap](objs) {
		if cm.Name == release+"-corepipe-minio-setup" {
			setup = cm
		}
	}
	if setup == nil {
		t.Fatal("no setup ConfigMap")
	}
	for _, role := range []string{"agent", "analyzer", "api"} {
		var got, want any
		if err := json.Unmarshal([]byte(setup.Data[role+".json"]), &got); err != nil {
			t.Errorf("%s policy: %v", role, err)
		}
		if err := json.Unmarshal([]byte(s3Policy(t, role, "corepipe")), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s policy as rendered:\n%s\nwant policies/%s with the bucket", role, setup.Data[role+".json"], s3Roles[role])
		}
		if !strings.Contains(setup.Data["setup.sh"], "corepipe-$role") {
			t.Errorf("setup script makes no corepipe-<role> users")
		}
	}
}

func TestChartPerRoleCredentialsExternal(t *testing.T) {
	objs := renderObjects(t, custom, `
s3:
  agent: {existingSecret: agent-s3}
  analyzer: {accessKey: AKIAANALYZER, secretKey: analyzer-secret}
nats:
  agent: {existingSecret: agent-nats}
`)
	w := workloads(objs)
	want := map[string]map[string]string{
		"agent": {"COREPIPE_NATS": "agent-nats/url",
			"AWS_ACCESS_KEY_ID": "agent-s3/AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "agent-s3/AWS_SECRET_ACCESS_KEY"},
		"analyzer": {"COREPIPE_NATS": "nats-url/url",
			"AWS_ACCESS_KEY_ID":     release + "-corepipe-analyzer-credentials/AWS_ACCESS_KEY_ID",
			"AWS_SECRET_ACCESS_KEY": release + "-corepipe-analyzer-credentials/AWS_SECRET_ACCESS_KEY"},
		// Given nothing of its own: the shared credentials.
		"api": {"COREPIPE_NATS": "nats-url/url",
			"AWS_ACCESS_KEY_ID": "crash-dumps-s3/AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "crash-dumps-s3/AWS_SECRET_ACCESS_KEY"},
	}
	for role, want := range want {
		if got := secretRefs(w[role].pod.Spec.Containers[0]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: credentials from %v, want %v", role, got, want)
		}
	}
	for _, s := range ofType[*corev1.Secret](objs) {
		if s.Name == release+"-corepipe-analyzer-credentials" {
			if s.StringData["AWS_ACCESS_KEY_ID"] != "AKIAANALYZER" || s.StringData["AWS_SECRET_ACCESS_KEY"] != "analyzer-secret" {
				t.Errorf("analyzer's Secret %v", s.StringData)
			}
		} else if strings.HasSuffix(s.Name, "-credentials") {
			t.Errorf("Secret %s rendered for a part with credentials of its own or none", s.Name)
		}
	}
	checkReferences(t, objs, "nats-url", "crash-dumps-s3", "agent-s3", "agent-nats")
	if len(ofType[*batchv1.Job](objs)) != 0 {
		t.Error("a MinIO setup job without the bundled MinIO")
	}

	if _, err := render(t, custom, "s3:\n  api: {accessKey: AKIAAPI}\n"); err == nil || !strings.Contains(err.Error(), "s3.api.secretKey is required") {
		t.Errorf("an access key without its secret: %v", err)
	}
}

func TestChartNATSSharedUser(t *testing.T) {
	objs := renderObjects(t, "nats:\n  perRoleUsers: false\n")
	for _, cm := range ofType[*corev1.ConfigMap](objs) {
		if cm.Name == release+"-corepipe-nats" {
			t.Error("a NATS users file without per-part users")
		}
	}
	w := workloads(objs)
	if args := w["nats"].pod.Spec.Containers[0].Args; strings.Contains(strings.Join(args, " "), "--config") {
		t.Errorf("nats args %q", args)
	}
	for _, role := range []string{"agent", "analyzer", "api"} {
		c := w[role].pod.Spec.Containers[0]
		if flagsOf(t, c.Args[1:])["--nats"] != "nats://"+release+"-corepipe-nats:4222" {
			t.Errorf("%s: args %q", role, c.Args)
		}
		if _, ok := secretRefs(c)["COREPIPE_NATS"]; ok {
			t.Errorf("%s: a NATS URL Secret without per-part users", role)
		}
	}
}

package corepipe

import (
	"slices"
	"strings"
	"testing"
)

func TestRedactArgs(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"/srv", "--password=hunter2", "-listen", ":8080"}, []string{"/srv", "--password=" + Redacted, "-listen", ":8080"}},
		{[]string{"/srv", "--password", "hunter2", "-v"}, []string{"/srv", "--password", Redacted, "-v"}},
		{[]string{"/srv", "-token", "abc", "--db-password=x", "--apiKey=y", "--AWS_SECRET_ACCESS_KEY=z"},
			[]string{"/srv", "-token", Redacted, "--db-password=" + Redacted, "--apiKey=" + Redacted, "--AWS_SECRET_ACCESS_KEY=" + Redacted}},
		{[]string{"/srv", "--key", "--verbose"}, []string{"/srv", "--key", "--verbose"}},
		{[]string{"/srv", "--token-file", "/run/secrets/t", "--auth-file=/etc/auth"}, []string{"/srv", "--token-file", "/run/secrets/t", "--auth-file=/etc/auth"}},
		{[]string{"/srv", "--dsn=postgres://app:hunter2@db:5432/x"}, []string{"/srv", "--dsn=" + Redacted}},
		{[]string{"/srv", "--db", "postgres://app:hunter2@db:5432/x?sslmode=off&password=p2"},
			[]string{"/srv", "--db", "postgres://app:" + Redacted + "@db:5432/x?sslmode=off&password=" + Redacted}},
		{[]string{"env", "PGPASSWORD=hunter2", "HOME=/root", "psql"}, []string{"env", "PGPASSWORD=" + Redacted, "HOME=/root", "psql"}},
		{[]string{"/srv", "--keyboard=us", "--monkey=1", "--passive"}, []string{"/srv", "--keyboard=us", "--monkey=1", "--passive"}},
		{[]string{"/srv", "--", "--password=x"}, []string{"/srv", "--", "--password=" + Redacted}},
		{nil, nil},
	} {
		if got := RedactArgs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("RedactArgs(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
	}
	in := []string{"/srv", "--password=hunter2"}
	RedactArgs(in)
	if in[1] != "--password=hunter2" {
		t.Error("RedactArgs changed its argument")
	}
}

func TestRedactEnviron(t *testing.T) {
	got := RedactEnviron(map[string]string{
		"GOMAXPROCS": "4", "GITHUB_TOKEN": "ghp_x", "DATABASE_URL": "mysql://u:hunter2@db/x", "SESSION_SECRET": "s",
	})
	want := map[string]string{"GOMAXPROCS": "4", "GITHUB_TOKEN": Redacted, "DATABASE_URL": "mysql://u:" + Redacted + "@db/x", "SESSION_SECRET": Redacted}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestReportRedacted(t *testing.T) {
	r := &Report{ID: "x", Process: Process{Cmdline: []string{"/srv", "--password=hunter2"}}}
	red := r.Redacted()
	if strings.Contains(strings.Join(red.Process.Cmdline, " "), "hunter2") {
		t.Errorf("redacted report shows %q", red.Process.Cmdline)
	}
	if r.Process.Cmdline[1] != "--password=hunter2" || red.ID != "x" {
		t.Error("Redacted changed the original or lost a field")
	}
}

func FuzzRedactArgs(f *testing.F) {
	f.Add("/srv\x00--password=hunter2\x00postgres://a:b@c/")
	f.Fuzz(func(t *testing.T, s string) {
		argv := strings.Split(s, "\x00")
		out := RedactArgs(argv)
		if len(out) != len(argv) {
			t.Fatalf("%d args became %d", len(argv), len(out))
		}
		for i, a := range argv {
			if name, v, ok := strings.Cut(a, "="); ok && i > 0 && strings.HasPrefix(a, "--") && SecretName(name) && v != "" && strings.Contains(out[i], v) && v != Redacted && !strings.Contains(Redacted, v) && !strings.Contains(name, v) {
				t.Errorf("%q kept its value: %q", a, out[i])
			}
		}
	})
}

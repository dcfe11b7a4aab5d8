package collector

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		want     kernelArgs
		problems int
	}{{
		name: "with pidfd",
		args: strings.Fields("4242 7 4243 6 1700000000 18446744073709551615 1000 2000 1 7 3"),
		want: kernelArgs{PID: 4242, NSTID: 7, TID: 4243, Signal: 6, Time: 1700000000, Rlimit: math.MaxUint64, HasRlimit: true, UID: 1000, GID: 2000, Dump: 1, NSPID: 7, PidFD: 3},
	}, {
		name: "kernel without %F",
		args: strings.Fields("4242 7 4243 11 1700000000 0 0 0 1 7"),
		want: kernelArgs{PID: 4242, NSTID: 7, TID: 4243, Signal: 11, Time: 1700000000, HasRlimit: true, Dump: 1, NSPID: 7, PidFD: -1},
	}, {
		name: "%F expanded to an empty argument",
		args: append(strings.Fields("4242 7 4243 11 1700000000 0 0 0 1 7"), ""),
		want: kernelArgs{PID: 4242, NSTID: 7, TID: 4243, Signal: 11, Time: 1700000000, HasRlimit: true, Dump: 1, NSPID: 7, PidFD: -1},
	}, {
		name:     "garbled rlimit is unknown, not zero",
		args:     strings.Fields("4242 7 4243 6 1700000000 lots 1000 2000 1 7 3"),
		want:     kernelArgs{PID: 4242, NSTID: 7, TID: 4243, Signal: 6, Time: 1700000000, UID: 1000, GID: 2000, Dump: 1, NSPID: 7, PidFD: 3},
		problems: 1,
	}, {
		name:     "too few",
		args:     []string{"4242", "-1"},
		want:     kernelArgs{PID: 4242, UID: -1, GID: -1, PidFD: -1},
		problems: 2,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := parseArgs(tc.args)
			if got != tc.want {
				t.Errorf("parseArgs = %+v\nwant        %+v", got, tc.want)
			}
			if len(problems) != tc.problems {
				t.Errorf("problems = %q, want %d", problems, tc.problems)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	st, err := parseStatus(procFile(t, "status"))
	if err != nil {
		t.Fatal(err)
	}
	want := status{Threads: 12, RSS: 58332 << 10, Peak: 1290684 << 10, UID: 1000, GID: 2000, NSPID: 7}
	if st != want {
		t.Errorf("parseStatus = %+v, want %+v", st, want)
	}
	if _, err := parseStatus([]byte("Threads:\tmany\nVmRSS:\t12 MB\n")); err == nil {
		t.Error("garbled status parsed without error")
	}
}

func TestParseLimits(t *testing.T) {
	l, err := parseLimits(procFile(t, "limits"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"Max core file size":   "unlimited",
		"Max stack size":       "8388608",
		"Max processes":        "15446",
		"Max open files":       "1048576",
		"Max nice priority":    "0",
		"Max realtime timeout": "unlimited",
	} {
		if l[name] != want {
			t.Errorf("limits[%q] = %q, want %q", name, l[name], want)
		}
	}
	if len(l) != 16 {
		t.Errorf("got %d limits, want 16: %v", len(l), l)
	}
}

func TestParseCmdline(t *testing.T) {
	args, capped := parseCmdline([]byte("a\x00b/../c\x00line\nbreak\x00\x00"))
	if want := []string{"a", "b/../c", "line\nbreak", ""}; !reflect.DeepEqual(args, want) || capped {
		t.Errorf("parseCmdline = %q, %v; want %q", args, capped, want)
	}
	args, capped = parseCmdline(bytes.Repeat([]byte("x\x00"), 5000))
	if len(args) != maxCmdlineArgs || !capped {
		t.Errorf("5000 arguments: kept %d (capped %v), want %d", len(args), capped, maxCmdlineArgs)
	}
	// setproctitle-style rewrites leave no NULs: one argument.
	if args, _ := parseCmdline([]byte("worker: idle")); !reflect.DeepEqual(args, []string{"worker: idle"}) {
		t.Errorf("no NULs: %q", args)
	}
}

func TestFilterEnviron(t *testing.T) {
	huge := "GOGC=" + strings.Repeat("9", 200<<10) // longer than the read buffer
	env := "SECRET=GOGC=1\x00" + huge + "\x00GOMAXPROCS=4\x00DB_PASSWORD=x\x00GODEBUG=a=1,b=2\x00GOGC=off"
	got, err := filterEnviron(strings.NewReader(env), DefaultEnvAllowlist)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"GOMAXPROCS": "4", "GODEBUG": "a=1,b=2", "GOGC": "off"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("filterEnviron = %q, want %q", got, want)
	}
}

package analyzer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
)

// bigReport is what the child writes for a core of n goroutines: most of
// them parked in a few places, each stack ten frames deep.
func bigReport(n int) *corepipe.Report {
	r := &corepipe.Report{Schema: corepipe.ReportSchema, ID: "01JCRASH", Status: corepipe.StatusAnalyzed,
		Title: "nil pointer dereference in main.(*server).retries", CrashingGoroutine: 1,
		Panic:   &corepipe.Panic{Kind: corepipe.PanicKindSignal, Message: "invalid memory address or nil pointer dereference"},
		Threads: []corepipe.Thread{{ID: 1, PC: "0x401000", Function: "runtime.raise"}}}
	for i := range n {
		g := corepipe.Goroutine{ID: int64(i + 1), Status: "chan receive", WaitReason: "chan receive", CreatedBy: "main.main"}
		if i == 0 {
			g.Status = "running"
		}
		for d := range 10 {
			g.Frames = append(g.Frames, corepipe.Frame{Function: fmt.Sprintf("main.worker%d.func%d", i%7, d),
				File: "/src/corepipe/cmd/server/worker.go", Line: 40 + d, PC: fmt.Sprintf("0x%x", 0x4a0000+d*16)})
		}
		r.Goroutines = append(r.Goroutines, g)
	}
	Enrich(r, nil)
	return r
}

func writeFile(t testing.TB, r *corepipe.Report) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := r.WriteJSON(f, true); err != nil {
		t.Fatal(err)
	}
	return f
}

func fileOf(t testing.TB, text string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	return f
}

// roundTrip reads a report file and writes the report it makes.
func roundTrip(f file) (*corepipe.Report, []byte, error) {
	head, rf, err := readReport(f)
	if err != nil {
		return nil, nil, err
	}
	var out bytes.Buffer
	if err := writeReport(&out, head, rf); err != nil {
		return nil, nil, err
	}
	return head, out.Bytes(), nil
}

// The parent holds every field but the goroutines, and the crashing
// goroutine for the summary; what it stores is the report the child wrote.
func TestReportFileRoundTrip(t *testing.T) {
	want := bigReport(1000)
	head, out, err := roundTrip(writeFile(t, want))
	if err != nil {
		t.Fatal(err)
	}
	if len(head.Goroutines) != 1 || head.Goroutines[0].ID != 1 || head.Title != want.Title || len(head.GoroutineGroups) != 0 || len(want.GoroutineGroups) == 0 {
		t.Errorf("head: %d goroutines, title %q, %d groups", len(head.Goroutines), head.Title, len(head.GoroutineGroups))
	}
	if s := head.Summary(); len(s.TopFrames) == 0 || s.TopFrames[0].Function != "main.worker0.func0" {
		t.Errorf("summary top frames %+v", s.TopFrames)
	}
	got, err := corepipe.ReadStored(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("stored report: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the stored report differs from the child's")
	}
	var stored bytes.Buffer
	want.WriteStored(&stored)
	if len(out) != stored.Len() {
		t.Errorf("stored %d bytes, want the stored form's %d", len(out), stored.Len())
	}
	// A report without goroutines (a C program's) keeps none.
	_, out, err = roundTrip(writeFile(t, &corepipe.Report{Schema: 1, ID: "x", Threads: []corepipe.Thread{{ID: 3}}}))
	if err != nil || bytes.Contains(out, []byte("goroutines")) || !json.Valid(out) {
		t.Errorf("report without goroutines: %s, %v", out, err)
	}
}

// What a child that delve's bugs let a core take over could write: each is
// refused, or stored as an inert goroutine list; none reaches the store as
// a report with other fields than the child's own.
func TestReportFileHostile(t *testing.T) {
	big := strings.Repeat("x", maxGoroutine)
	for _, tc := range []struct{ name, text, want string }{
		{"not an object", `[1,2]`, "report JSON has '['"},
		{"truncated", `{"schema":1,"goroutines":[{"id":1}`, "unexpected EOF"},
		{"unterminated string", `{"schema":1,"title":"abc`, "unexpected EOF"},
		{"goroutine not an object", `{"schema":1,"goroutines":[{"id":1},"x"]}`, "goroutines: element 1: invalid: an element is"},
		{"bad goroutine", `{"schema":1,"goroutines":[{"id":1,}]}`, "malformed"},
		{"two goroutine lists", `{"schema":1,"goroutines":[],"goroutines":[{"id":1}]}`, "two goroutines lists"},
		{"goroutines in another case", `{"schema":1,"goroutines":[],"GoRoutines":[{"id":1}]}`, "two goroutines lists"},
		{"escaped name", `{"schema":1,"goroutine_groups":[],"goroutine_gro\u0075ps":[{"count":1}]}`, "two goroutine_groups lists"},
		{"garbage after", `{"schema":1}{"schema":1,"status":"x"}`, "after its end"},
		{"huge goroutine", `{"schema":1,"goroutines":[{"title":"` + big + `"}]}`, "over 8388608 bytes"},
		{"bad member", `{"schema":1,"title":"a",}`, "malformed"},
		{"bad value", `{"schema":1,"title":tru}`, "report JSON"},
		{"wrong type", `{"schema":"one"}`, "cannot unmarshal"},
		{"goroutine of the wrong type", `{"schema":1,"goroutines":[{"id":"one"}]}`, "goroutines: element 0: invalid: json: cannot unmarshal string"},
		{"group of the wrong type", `{"schema":1,"goroutine_groups":[{"top_frAmes":""}]}`, "goroutine_groups: element 0: invalid: json: cannot unmarshal string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, out, err := roundTrip(fileOf(t, tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("read %q: %v (%s), want an error saying %q", tc.text[:min(len(tc.text), 80)], err, out, tc.want)
			}
			if errors.Is(err, corepipe.ErrInvalid) != !strings.Contains(tc.want, "EOF") && !strings.Contains(err.Error(), "EOF") {
				t.Errorf("error %v: want ErrInvalid", err)
			}
		})
	}
	// Brackets and quotes inside strings end nothing.
	text := `{"schema":1,"goroutines":[{"id":1,"created_by":"x\"],\"process\":{\"pid\":6}}"}],"title":"t"}`
	head, out, err := roundTrip(fileOf(t, text))
	if err != nil || head.Title != "t" {
		t.Fatalf("%v %+v", err, head)
	}
	got, err := corepipe.ReadStored(bytes.NewReader(out))
	if err != nil || len(got.Goroutines) != 1 || got.Process.PID != 0 || got.Goroutines[0].CreatedBy != `x"],"process":{"pid":6}}` {
		t.Errorf("stored %s: %v", out, err)
	}
}

// measure reads and stores a report file of n goroutines and returns the
// allocations and bytes it took, and the file's size.
func measure(t *testing.T, n int) (allocs float64, bytes uint64, size int64) {
	f := writeFile(t, bigReport(n))
	st, _ := f.Stat()
	run := func() {
		head, rf, err := readReport(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeReport(io.Discard, head, rf); err != nil {
			t.Fatal(err)
		}
	}
	allocs = testing.AllocsPerRun(1, run)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	run()
	runtime.ReadMemStats(&after)
	return allocs, after.TotalAlloc - before.TotalAlloc, st.Size()
}

// The parent's cost of a report does not grow with its goroutines: 180 MB
// of JSON for 100 000 of them costs what 10 000 cost.
func TestReportFileMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 130 MB of report")
	}
	const maxAllocs, maxBytes = 1000, 8 << 20
	for _, n := range []int{10_000, 100_000} {
		allocs, bytes, size := measure(t, n)
		t.Logf("%d goroutines, %d MB of JSON: %.0f allocations, %d KiB allocated", n, size>>20, allocs, bytes>>10)
		if allocs > maxAllocs || bytes > maxBytes {
			t.Errorf("%d goroutines: %.0f allocations, %d KiB; want at most %d and %d KiB", n, allocs, bytes>>10, maxAllocs, maxBytes>>10)
		}
	}
}

// BenchmarkReportFile measures reading a child's report of 100 000
// goroutines and writing it on to the store.
func BenchmarkReportFile(b *testing.B) {
	f := writeFile(b, bigReport(100_000))
	st, _ := f.Stat()
	b.SetBytes(st.Size())
	b.ReportAllocs()
	for b.Loop() {
		head, rf, err := readReport(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := writeReport(io.Discard, head, rf); err != nil {
			b.Fatal(err)
		}
	}
}

// memFile is a report file in memory.
type memFile struct{ *bytes.Reader }

func (memFile) Close() error { return nil }

// FuzzReadReport: whatever the child writes, the parent either refuses it
// or stores valid JSON of a report with the goroutines it counted.
func FuzzReadReport(f *testing.F) {
	var seed bytes.Buffer
	bigReport(3).WriteJSON(&seed, true)
	f.Add(seed.Bytes())
	seed.Reset()
	bigReport(2).WriteJSON(&seed, false)
	f.Add(seed.Bytes())
	f.Add([]byte(`{"schema":1,"goroutines":[{"id":1,"created_by":"x\"]"}],"title":"t"}`))
	f.Add([]byte(`{"schema":1,"crashing_goroutine":2,"goroutines":[{"id":2,"frames":[{"function":"f"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		head, out, err := roundTrip(memFile{bytes.NewReader(data)})
		if err != nil {
			return
		}
		var got struct {
			corepipe.Report
			Raw []json.RawMessage `json:"goroutines"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("stored invalid JSON %q: %v", out, err)
		}
		if len(head.Goroutines) > 1 {
			t.Errorf("the parent held %d goroutines", len(head.Goroutines))
		}
		if bytes.Count(data, []byte("{")) < len(got.Raw) {
			t.Errorf("stored %d goroutines from %q", len(got.Raw), data)
		}
	})
}

package corepipe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// leakReport is a report with n goroutines parked on distinct stacks
// (each of depth frames), as a goroutine leak leaves them, and the odd
// goroutine without frames or with an empty stack.
func leakReport(n, distinct, depth int) *Report {
	r := &Report{Schema: ReportSchema, ID: "01JLEAK", Status: StatusAnalyzed, CapturedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Panic: &Panic{Kind: PanicKindFatal, Message: "all goroutines are asleep"}, CrashingGoroutine: 1,
		Threads:         []Thread{{ID: 7, PC: "0x1", Frames: []Frame{{Function: "runtime.raise"}}}},
		GoroutineGroups: []GoroutineGroup{{Count: n, Status: "chan receive", TopFrames: []Frame{{Function: "main.leak"}}, GoroutineIDs: []int64{1, 2}}},
		Title:           "deadlock"}
	for i := range n {
		g := Goroutine{ID: int64(i + 1), Status: "chan receive", WaitReason: "chan receive", WaitMinutes: int64(i % 7), CreatedBy: "main.start"}
		if i%3 == 0 {
			g.Labels = map[string]string{"worker": fmt.Sprint(i % distinct)}
		}
		s := i % distinct
		for d := range depth + s%5 {
			g.Frames = append(g.Frames, Frame{Function: fmt.Sprintf("main.f%d_%d", s, d), File: "/src/main.go", Line: 10*d + s, PC: fmt.Sprintf("%#x", 0x401000+d)})
		}
		switch i {
		case 5:
			g.Frames = nil
		case 6:
			g.Frames = []Frame{}
		}
		r.Goroutines = append(r.Goroutines, g)
	}
	return r
}

func TestStoredRoundTrips(t *testing.T) {
	r := leakReport(2000, 37, 20)
	var stored, plain bytes.Buffer
	if err := r.WriteStored(&stored); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&plain, false); err != nil {
		t.Fatal(err)
	}
	if stored.Len()*5 > plain.Len() {
		t.Errorf("stored form is %d bytes, the plain JSON %d: identical stacks are not stored once", stored.Len(), plain.Len())
	}
	got, err := ReadStored(bytes.NewReader(stored.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("stored form changed the report")
	}
	if got.Goroutines[5].Frames != nil || got.Goroutines[6].Frames == nil || len(got.Goroutines[6].Frames) != 0 {
		t.Errorf("nil and empty frames read back as %#v and %#v", got.Goroutines[5].Frames, got.Goroutines[6].Frames)
	}
	if &got.Goroutines[0].Frames[0] != &got.Goroutines[37].Frames[0] {
		t.Errorf("goroutines of one stack do not share its frames")
	}
	// Reports stored before the stored form are plain JSON.
	old, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err = ReadStored(bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("plain JSON read back differently")
	}
}

// TestServedJSONOfStored: what clients get of a stored report (WriteJSON
// of what ReadStored gives, frames shared) is json.Marshal's JSON of the
// same report, indented or not.
func TestServedJSONOfStored(t *testing.T) {
	r := leakReport(500, 11, 15)
	var stored bytes.Buffer
	if err := r.WriteStored(&stored); err != nil {
		t.Fatal(err)
	}
	back, err := ReadStored(&stored)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, indent := range []bool{false, true} {
		var served bytes.Buffer
		if err := back.WriteJSON(&served, indent); err != nil {
			t.Fatal(err)
		}
		sameJSON(t, served.Bytes(), want)
		if indent {
			var re bytes.Buffer
			json.Indent(&re, served.Bytes(), "", "  ")
			if !bytes.Equal(bytes.TrimSpace(re.Bytes()), bytes.TrimSpace(served.Bytes())) {
				t.Errorf("indented JSON is not indented as json.Indent does it")
			}
		}
	}
}

func sameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("served JSON is invalid: %v", err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("served JSON differs from json.Marshal's:\n got %.600s\nwant %.600s", got, want)
	}
}

func TestReadStoredRejects(t *testing.T) {
	const head = `{"schema":1,"id":"01J","status":"analyzed","captured_at":"2026-01-02T03:04:05Z","process":{"pid":1,"uid":0,"gid":0},"artifacts":{"core":{"size":0,"stored_size":0},"executable":{"found":false}},"timings":{"capture_ms":0},"stored_form":1`
	for _, tc := range []struct{ name, json string }{
		{"stack out of range", head + `,"goroutines":[{"id":1,"status":"x","stack":1,"frames":[{"function":"f"}]}]}`},
		{"stack not yet defined", head + `,"goroutines":[{"id":1,"status":"x","stack":0,"frames":[{"function":"f"}]},{"id":2,"status":"x","stack":2}]}`},
		{"negative stack", head + `,"goroutines":[{"id":1,"status":"x","stack":-1}]}`},
		{"stack defined twice", head + `,"goroutines":[{"id":1,"status":"x","stack":0,"frames":[{"function":"f"}]},{"id":2,"status":"x","stack":0,"frames":[{"function":"g"}]}]}`},
		{"huge stack", head + `,"goroutines":[{"id":1,"status":"x","stack":99999999999999999999}]}`},
		{"newer form", strings.Replace(head, `"stored_form":1`, `"stored_form":2`, 1) + `}`},
		{"two goroutine lists", head + `,"goroutines":[],"Goroutines":[]}`},
		{"goroutines not a list", head + `,"goroutines":{}}`},
		{"truncated", head + `,"goroutines":[{"id":1,"status":"x","stack":0,"frames":[{"func`},
		{"trailing", head + `}{}`},
		{"not an object", `[1]`},
		{"empty", ``},
	} {
		_, err := ReadStored(strings.NewReader(tc.json))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", tc.name, err)
		}
	}
}

// errReader fails after its bytes.
type errReader struct {
	b   []byte
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	if len(e.b) == 0 {
		return 0, e.err
	}
	n := copy(p, e.b)
	e.b = e.b[n:]
	return n, nil
}

func TestReadStoredReadError(t *testing.T) {
	var b bytes.Buffer
	leakReport(50, 3, 5).WriteStored(&b)
	cut := errors.New("connection reset")
	_, err := ReadStored(&errReader{b: b.Bytes()[:b.Len()/2], err: cut})
	if !errors.Is(err, cut) || errors.Is(err, ErrInvalid) {
		t.Errorf("err %v: want the reader's error, not ErrInvalid", err)
	}
}

func FuzzReadStored(f *testing.F) {
	var b bytes.Buffer
	leakReport(12, 4, 3).WriteStored(&b)
	f.Add(b.Bytes())
	plain, _ := json.Marshal(leakReport(5, 2, 2))
	f.Add(plain)
	f.Add([]byte(`{"schema":1,"stored_form":1,"goroutines":[{"id":1,"stack":0},{"id":2,"stack":0,"frames":[]}]}`))
	f.Add([]byte(`{"schema":1,"goroutines":[{"id":1,"frames":[{"function":"f"}]}],"title":"after","crashing_goroutine":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadStored(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error from bytes in memory is not ErrInvalid: %v", err)
			}
			return
		}
		var stored, served bytes.Buffer
		if err := r.WriteStored(&stored); err != nil {
			t.Fatal(err)
		}
		again, err := ReadStored(&stored)
		if err != nil {
			t.Fatalf("stored form of a read report does not read: %v\n%s", err, stored.Bytes())
		}
		want, _ := json.Marshal(r)
		if got, _ := json.Marshal(again); !bytes.Equal(got, want) {
			t.Fatalf("stored again, the report changed:\n got %s\nwant %s", got, want)
		}
		if err := r.WriteJSON(&served, false); err != nil {
			t.Fatal(err)
		}
		sameJSON(t, served.Bytes(), want)
		// Served one goroutine at a time, as the API does, with what
		// follows the goroutines written after them.
		served.Reset()
		var jw *JSONWriter
		tail, err := ReadStoredEach(bytes.NewReader(data), func(head *Report, g Goroutine) error {
			if jw == nil {
				var err error
				if jw, err = NewJSONWriter(&served, head, false); err != nil {
					return err
				}
			}
			return jw.Goroutine(&g)
		})
		if err != nil || jw == nil {
			return
		}
		if err := jw.Close(tail); err != nil {
			t.Fatal(err)
		}
		sameJSON(t, served.Bytes(), want)
	})
}

// FuzzStoredGoroutineJSON: a goroutine written from its JSON, as the
// analyzer has it, reads back as the goroutine that JSON decodes to.
func FuzzStoredGoroutineJSON(f *testing.F) {
	f.Add([]byte(`{"id":1,"status":"x","frames":[{"function":"f","line":2}],"frames_elided":3}`), []byte(`{"id":2,"frames":[{"function":"f","line":2}]}`))
	f.Add([]byte(`{ "id" : 1 , "Frames" : [ ] , "labels" : {"frames":"null"} }`), []byte(`{"id":2,"frames":null,"stack":4}`))
	f.Add([]byte(`{"fr\u0061mes":[{"function":"g"}],"frames":[]}`), []byte(`{"created_by":"\"frames\":[","frames":[{"pc":"0x1"}]}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var want []Goroutine
		for _, obj := range [][]byte{a, b, a} {
			var g Goroutine
			if json.Unmarshal(obj, &g) != nil {
				return
			}
			want = append(want, g)
		}
		var out bytes.Buffer
		sw, err := NewStoredWriter(&out, &Report{Schema: ReportSchema})
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range [][]byte{a, b, a} {
			if err := sw.GoroutineJSON(obj); err != nil {
				t.Fatal(err)
			}
		}
		if err := sw.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := ReadStored(&out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out.Bytes())
		}
		gotJSON, _ := json.Marshal(r.Goroutines)
		wantJSON, _ := json.Marshal(want)
		if !bytes.Equal(gotJSON, wantJSON) {
			t.Fatalf("read back\n %s\nwant\n %s\nstored %s", gotJSON, wantJSON, out.Bytes())
		}
	})
}

package corepipe

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestWriteJSONRoundTrips(t *testing.T) {
	r := &Report{Schema: ReportSchema, ID: "01J", Status: StatusAnalyzed, CapturedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Panic: &Panic{Kind: PanicKindPanic, Message: "boom \"quoted\"\nsecond line"}, CrashingGoroutine: 1,
		Threads: []Thread{{ID: 7, PC: "0x1"}}, Title: "panic: boom"}
	for i := range 3 {
		r.Goroutines = append(r.Goroutines, Goroutine{ID: int64(i + 1), Status: "chan receive",
			Labels: map[string]string{"k": "v"},
			Frames: []Frame{{Function: "main.f", File: "/src/main.go", Line: 3 + i, PC: "0x4a"}}})
	}
	empty := *r
	empty.Goroutines = nil
	for _, rep := range []*Report{r, &empty} {
		for _, indent := range []bool{false, true} {
			var b bytes.Buffer
			if err := rep.WriteJSON(&b, indent); err != nil {
				t.Fatal(err)
			}
			var got Report
			if err := json.Unmarshal(b.Bytes(), &got); err != nil {
				t.Fatalf("indent %v: invalid JSON: %v\n%s", indent, err, b.String())
			}
			if !reflect.DeepEqual(&got, rep) {
				t.Errorf("indent %v: round trip changed the report:\n got %+v\nwant %+v", indent, &got, rep)
			}
			nested := bytes.Contains(b.Bytes(), []byte("\n  \"goroutines\": [\n    {\n      \"id\": 1,"))
			if indent && len(rep.Goroutines) > 0 && !nested {
				t.Errorf("goroutines are not indented like MarshalIndent's:\n%s", b.String())
			}
		}
	}
}

package analyzer

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/corepipe/corepipe"
)

var goroutineShape = shapeOf(reflect.TypeFor[corepipe.Goroutine]())

// What the child writes passes the check itself, without encoding/json.
func TestShapeTakesTheChildsOwnOutput(t *testing.T) {
	r := bigReport(20)
	groupShape := shapeOf(reflect.TypeFor[corepipe.GoroutineGroup]())
	for _, indent := range []bool{false, true} {
		for _, g := range r.Goroutines {
			b, _ := marshalFor(g, indent)
			if rest, ok := goroutineShape.check(b); !ok || len(skipSpace(rest)) != 0 {
				t.Fatalf("goroutine %s not vouched for", b)
			}
		}
		for _, g := range r.GoroutineGroups {
			b, _ := marshalFor(g, indent)
			if rest, ok := groupShape.check(b); !ok || len(skipSpace(rest)) != 0 {
				t.Fatalf("group %s not vouched for", b)
			}
		}
	}
}

func marshalFor(v any, indent bool) ([]byte, error) {
	if indent {
		return json.MarshalIndent(v, "    ", "  ")
	}
	return json.Marshal(v)
}

// The check agrees with encoding/json on every kind of mistake a goroutine
// can hold.
func TestShapeAgreesWithEncodingJSON(t *testing.T) {
	for _, text := range []string{
		`{"id":1,"status":"running","frames":[{"function":"main.f","line":3,"pc":"0x1"}],"labels":{"a":"b"}}`,
		`{"id":null,"frames":null,"labels":null}`,
		`{"zzz":[1,{"a":"]}"}],"id":2}`,
		`{"ID":3,"Frames":[]}`,
		`{"id":-9223372036854775808}`,
		`{"id":"x"}`,
		`{"ID":"x"}`,
		`{"\u0069d":"x"}`,
		`{"\u0069d":7}`,
		`{"id":1.5}`,
		`{"id":1e3}`,
		`{"id":-1,"thread_id":99999999999999999999}`,
		`{"frames":{}}`,
		`{"frames":[{"line":"7"}]}`,
		`{"frames":[1]}`,
		`{"labels":{"a":1}}`,
		`{"labels":[]}`,
		`{"status":true}`,
		`{"frames_elided":false}`,
		`{"id":1,"id":"x"}`,
	} {
		want := json.Unmarshal([]byte(text), new(corepipe.Goroutine))
		got := goroutineShape.validate([]byte(text))
		if (got == nil) != (want == nil) {
			t.Errorf("%s: check says %v, encoding/json %v", text, got, want)
		}
	}
}

// FuzzShape: whatever the check vouches for, encoding/json decodes.
func FuzzShape(f *testing.F) {
	for _, g := range bigReport(2).Goroutines {
		b, _ := json.Marshal(g)
		f.Add(b)
	}
	f.Add([]byte(`{"id":1,"labels":{"a":"b"},"frames":[{"line":1}],"x":[{"y":"]"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		err := json.Unmarshal(data, new(corepipe.Goroutine))
		if rest, ok := goroutineShape.check(skipSpace(data)); ok && len(skipSpace(rest)) == 0 && err != nil {
			t.Errorf("%s vouched for, but encoding/json says %v", data, err)
		}
		if (goroutineShape.validate(data) == nil) != (err == nil) {
			t.Errorf("%s: validate disagrees with encoding/json (%v)", data, err)
		}
	})
}

package analyzer

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
)

// shape is what encoding/json accepts for a Go type, checked on the JSON
// text of a value without decoding it: the goroutines streamed from the
// child's report must decode in every reader of the stored report, and
// decoding 100 000 of them here only to check is what streaming avoids.
// check is sound, not complete: what it cannot vouch for (escaped names,
// large numbers, kinds it does not know) goes to encoding/json itself.
type shape struct {
	typ    reflect.Type
	kind   reflect.Kind // reflect.Invalid: let encoding/json decide
	elem   *shape       // of a slice, or a map's values
	fields []shapeField // of a struct
}

type shapeField struct {
	name  string
	shape *shape
}

// shapeOf describes t; the report's types are trees, so no cycle occurs.
func shapeOf(t reflect.Type) *shape {
	sh := &shape{typ: t, kind: t.Kind()}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if custom(t) {
			sh.kind = reflect.Invalid
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 || custom(t) {
			sh.kind = reflect.Invalid // base64
			break
		}
		sh.elem = shapeOf(t.Elem())
	case reflect.Map:
		if t.Key().Kind() != reflect.String || t.Elem().Kind() != reflect.String || custom(t) || custom(t.Key()) {
			sh.kind = reflect.Invalid
			break
		}
		sh.elem = shapeOf(t.Elem())
	case reflect.Struct:
		if custom(t) {
			sh.kind = reflect.Invalid
			break
		}
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous || !f.IsExported() || opts != "" && opts != "omitempty" || name == "-" {
				// Embedding, ",string" and the like: not worth mirroring.
				sh.kind = reflect.Invalid
				break
			}
			if name == "" {
				name = f.Name
			}
			sh.fields = append(sh.fields, shapeField{name: name, shape: shapeOf(f.Type)})
		}
	default:
		sh.kind = reflect.Invalid
	}
	return sh
}

// custom reports whether values of t decode their own way.
func custom(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(reflect.TypeFor[json.Unmarshaler]()) || p.Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

// validate reports why b, one valid JSON value, does not decode into sh's
// type, if it does not.
func (sh *shape) validate(b []byte) error {
	if rest, ok := sh.check(skipSpace(b)); ok && len(skipSpace(rest)) == 0 {
		return nil
	}
	return json.Unmarshal(b, reflect.New(sh.typ).Interface())
}

// check reports whether the value at the start of b, valid JSON, surely
// decodes into sh's type, and returns what follows it.
func (sh *shape) check(b []byte) (rest []byte, ok bool) {
	if len(b) == 0 {
		return b, false
	}
	if bytes.HasPrefix(b, []byte("null")) {
		return b[4:], true // encoding/json leaves the value as it was
	}
	switch sh.kind {
	case reflect.String:
		if b[0] == '"' {
			return skipString(b), true
		}
	case reflect.Bool:
		if bytes.HasPrefix(b, []byte("true")) {
			return b[4:], true
		}
		if bytes.HasPrefix(b, []byte("false")) {
			return b[5:], true
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return sh.checkInt(b)
	case reflect.Slice:
		if b[0] == '[' {
			return sh.checkList(b[1:], ']', func(b []byte) ([]byte, bool) { return sh.elem.check(b) })
		}
	case reflect.Map:
		if b[0] == '{' {
			return sh.checkList(b[1:], '}', func(b []byte) ([]byte, bool) {
				if len(b) == 0 || b[0] != '"' {
					return b, false
				}
				b = skipSpace(skipString(b))
				return sh.elem.check(skipSpace(b[1:])) // past the colon
			})
		}
	case reflect.Struct:
		if b[0] == '{' {
			return sh.checkList(b[1:], '}', sh.checkMember)
		}
	}
	return b, false
}

// checkInt accepts integers short enough to fit the type whatever their
// digits.
func (sh *shape) checkInt(b []byte) ([]byte, bool) {
	signed := sh.kind >= reflect.Int && sh.kind <= reflect.Int64
	i := 0
	if signed && len(b) > 0 && b[0] == '-' {
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	// The most digits any value of the type's size holds.
	digits := 18
	switch sh.typ.Bits() {
	case 8:
		digits = 2
	case 16:
		digits = 4
	case 32:
		digits = 9
	}
	if i == start || i-start > digits || i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return b, false
	}
	return b[i:], true
}

// checkList checks the elements or members of an array or object whose
// opening byte is gone, up to its closing byte.
func (sh *shape) checkList(b []byte, end byte, elem func([]byte) ([]byte, bool)) ([]byte, bool) {
	b = skipSpace(b)
	if len(b) > 0 && b[0] == end {
		return b[1:], true
	}
	for {
		var ok bool
		if b, ok = elem(skipSpace(b)); !ok {
			return b, false
		}
		b = skipSpace(b)
		if len(b) == 0 {
			return b, false
		}
		switch b[0] {
		case ',':
			b = b[1:]
		case end:
			return b[1:], true
		default:
			return b, false
		}
	}
}

// checkMember checks one "name": value of a struct's object. encoding/json
// matches names exactly, else without regard to ASCII case; a name with
// escapes or other bytes is left to it.
func (sh *shape) checkMember(b []byte) ([]byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return b, false
	}
	after := skipString(b)
	name := b[1 : len(b)-len(after)-1]
	for _, c := range name {
		if c == '\\' || c >= 0x80 {
			return b, false
		}
	}
	b = skipSpace(after)
	b = skipSpace(b[1:]) // past the colon
	var match *shape
	for i := range sh.fields {
		if f := &sh.fields[i]; string(name) == f.name {
			match = f.shape
			break
		}
	}
	if match == nil {
		for i := range sh.fields {
			if f := &sh.fields[i]; bytes.EqualFold(name, []byte(f.name)) {
				match = f.shape
				break
			}
		}
	}
	if match == nil {
		return skipValue(b), true // encoding/json ignores it
	}
	return match.check(b)
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// skipString returns what follows the string at the start of b.
func skipString(b []byte) []byte {
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return b[i+1:]
		}
	}
	return nil
}

// skipValue returns what follows the valid JSON value at the start of b.
func skipValue(b []byte) []byte {
	switch b[0] {
	case '"':
		return skipString(b)
	case '{', '[':
		depth := 0
		for i := 0; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = len(b) - len(skipString(b[i:])) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return b[i+1:]
				}
			}
		}
		return nil
	}
	i := 0
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return b[i:]
}

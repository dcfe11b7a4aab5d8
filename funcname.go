package corepipe

import "strings"

// ElideTypeArgs spells a generic function the way the Go runtime's traceback
// does, with its type arguments as "...": they name the instantiation's
// shapes, which say nothing about the bug and change between builds.
func ElideTypeArgs(name string) string {
	if !strings.Contains(name, "[") {
		return name
	}
	var b strings.Builder
	depth := 0
	for _, r := range name {
		switch {
		case r == '[':
			if depth == 0 {
				b.WriteString("[...")
			}
			depth++
		case r == ']':
			depth--
			if depth == 0 {
				b.WriteByte(']')
			}
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

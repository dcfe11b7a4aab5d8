// Package settings fills the settings a caller left unset. Every option
// struct in corepipe treats a zero or negative count, size or duration as
// "not set": none of them means anything below one.
package settings

// Default sets *v to def unless *v is already positive.
func Default[T ~int | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

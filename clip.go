package corepipe

// Clip is s cut to its first n characters, with "…" where it was cut: the
// one way text of unknown length (a title on a terminal line, a value
// quoted back in an error, a panic message in a chat message) is shortened.
// It counts runes, so it never splits a UTF-8 sequence, and the result is at
// most 4n+3 bytes whatever s holds. n < 1 is treated as 1.
func Clip(s string, n int) string {
	n = max(n, 1)
	if len(s) <= n {
		return s
	}
	for i := range s {
		if n == 0 {
			return s[:i] + "…"
		}
		n--
	}
	return s
}

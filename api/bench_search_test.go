package api

import "testing"

// BenchmarkSearch pages through full-text search results on the benchmark
// index: a word in 1 crash in 500, a phrase in all, a function of
// the crashing goroutine, a word in none (the worst: nothing fills the
// page), and a word with a filter.
func BenchmarkSearch(b *testing.B) {
	for _, tc := range []struct{ name, query string }{
		{"rare-title", "q=handler17"},
		{"common", "q=nil+pointer"},
		{"function", "q=retries"},
		{"none", "q=nomatch"},
		{"rare+node", "q=handler17&node=node-07"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			benchGets(b, func(int) string { return "/api/v1/crashes?limit=50&" + tc.query })
		})
	}
}

// BenchmarkReleases reads every crash row of the benchmark index to list
// releases.
func BenchmarkReleases(b *testing.B) {
	benchGets(b, func(int) string { return "/api/v1/releases" })
}

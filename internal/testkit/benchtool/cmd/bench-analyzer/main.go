// Command bench-analyzer compares `corepipe analyze` with `dlv core` running
// `goroutines -t` on cores the real kernel dumps in the same run: a Go
// program with many parked goroutines and one with a huge live heap. It
// prints wall time, peak RSS and the goroutines each reported, and deletes
// the cores afterwards. scripts/bench-analyzer.sh builds its inputs.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe/internal/testkit/benchtool"
)

func main() {
	corepipeBin := flag.String("corepipe", "bin/corepipe", "the corepipe binary")
	dlvBin := flag.String("dlv", "dlv", "delve's dlv binary")
	goroutines := flag.Int("goroutines", 100000, "parked goroutines in the first core")
	heapMiB := flag.Int("heap-mib", 4096, "live heap of the second core, in MiB")
	scratch := flag.String("dir", os.TempDir(), "where cores are written (needs room for the heap core)")
	only := flag.String("only", "", "run one case: parked or heap")
	flag.Uint64Var(&maxMemory, "max-memory", 4<<30, "address-space limit (RLIMIT_AS) of corepipe analyze, as the analyzer sets it (0: none)")
	flag.Parse()
	if err := run(*corepipeBin, *dlvBin, *scratch, *only, *goroutines, *heapMiB); err != nil {
		fmt.Fprintln(os.Stderr, "bench-analyzer:", err)
		os.Exit(1)
	}
}

// maxMemory is the RLIMIT_AS corepipe analyze runs under, to show that the
// analyzer's default limit leaves room.
var maxMemory uint64

type benchCase struct {
	name, src string
	arg       int
}

type row struct {
	name                  string
	coreSize              int64
	want, dlvN, corepipeN int
	dlv, corepipe         benchtool.Usage
	dlvErr, corepipeErr   error
}

func run(corepipeBin, dlvBin, scratch, only string, goroutines, heapMiB int) error {
	cases := []benchCase{
		{fmt.Sprintf("%d parked goroutines", goroutines), benchtool.ParkedProgram, goroutines},
		{fmt.Sprintf("%d MiB live heap", heapMiB), benchtool.HeapProgram, heapMiB},
	}
	var rows []row
	for i, c := range cases {
		if only != "" && !strings.HasPrefix([]string{"parked", "heap"}[i], only) {
			continue
		}
		dir, err := os.MkdirTemp(scratch, "bench-analyzer-")
		if err != nil {
			return err
		}
		r, err := measure(dir, corepipeBin, dlvBin, c)
		os.RemoveAll(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		rows = append(rows, r)
	}
	printTable(os.Stdout, rows)
	return nil
}

func measure(dir, corepipeBin, dlvBin string, c benchCase) (row, error) {
	r := row{name: c.name}
	fmt.Fprintf(os.Stderr, "bench-analyzer: %s: building and dumping a core\n", c.name)
	exe, err := benchtool.Build(dir, "prog", c.src)
	if err != nil {
		return r, err
	}
	core, want, err := benchtool.Dump(dir, exe, strconv.Itoa(c.arg))
	if err != nil {
		return r, err
	}
	r.want = want
	if st, err := os.Stat(core); err == nil {
		r.coreSize = st.Size()
	}

	// dlv reads the commands from stdin like a terminal's; the flag lets it
	// when stdin is not one.
	fmt.Fprintf(os.Stderr, "bench-analyzer: %s: dlv core goroutines -t\n", c.name)
	dlvOut := filepath.Join(dir, "dlv.out")
	r.dlv, r.dlvErr = toFile(dlvOut, strings.NewReader("goroutines -t\nexit\n"), dlvBin, "--allow-non-terminal-interactive=true", "core", exe, core)
	if r.dlvErr == nil {
		r.dlvN, r.dlvErr = dlvCount(dlvOut)
	}
	os.Remove(dlvOut)

	fmt.Fprintf(os.Stderr, "bench-analyzer: %s: corepipe analyze\n", c.name)
	report := filepath.Join(dir, "report.json")
	restore, err := limitChildren(maxMemory)
	if err != nil {
		return r, err
	}
	r.corepipe, r.corepipeErr = toFile(report, nil, corepipeBin, "analyze", "--exe", exe, core)
	restore()
	if r.corepipeErr == nil {
		r.corepipeN, r.corepipeErr = reportCount(report)
	}
	return r, nil
}

// limitChildren lowers this process's soft RLIMIT_AS, which the next child
// inherits, and returns how to put it back.
func limitChildren(limit uint64) (restore func(), err error) {
	var prev unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_AS, &prev); err != nil {
		return nil, err
	}
	if limit == 0 {
		return func() {}, nil
	}
	lim := prev
	lim.Cur = min(limit, prev.Max)
	if err := unix.Setrlimit(unix.RLIMIT_AS, &lim); err != nil {
		return nil, fmt.Errorf("limit address space: %w", err)
	}
	return func() { unix.Setrlimit(unix.RLIMIT_AS, &prev) }, nil
}

// toFile runs the command with its output in a file, so that measuring it
// costs neither process memory.
func toFile(path string, stdin io.Reader, name string, args ...string) (benchtool.Usage, error) {
	f, err := os.Create(path)
	if err != nil {
		return benchtool.Usage{}, err
	}
	defer f.Close()
	var stderr bytes.Buffer
	u, err := benchtool.Measure(stdin, f, &limited{w: &stderr, n: 4096}, name, args...)
	if err != nil {
		return u, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return u, nil
}

var dlvTotal = regexp.MustCompile(`^\[(\d+) goroutines\]`)

// dlvCount reads the "[N goroutines]" line dlv ends its listing with.
func dlvCount(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if m := dlvTotal.FindSubmatch(s.Bytes()); m != nil {
			return strconv.Atoi(string(m[1]))
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("dlv printed no goroutine count")
}

// reportCount counts the report's goroutines one at a time: the report of
// 100 000 goroutines is far bigger than what is needed to count them.
func reportCount(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	if _, err := dec.Token(); err != nil {
		return 0, err
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return 0, err
		}
		if key != "goroutines" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return 0, err
			}
			continue
		}
		if _, err := dec.Token(); err != nil {
			return 0, err
		}
		n := 0
		for dec.More() {
			var g struct{ ID int64 }
			if err := dec.Decode(&g); err != nil {
				return 0, err
			}
			n++
		}
		return n, nil
	}
	return 0, nil
}

func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "core\tcore size\truntime printed\tdlv wall\tdlv CPU\tdlv max RSS\tdlv goroutines\tcorepipe wall\tcorepipe CPU\tcorepipe max RSS\tcorepipe goroutines\tspeedup wall\tspeedup CPU\t")
	for _, r := range rows {
		speedWall, speedCPU := "-", "-"
		if r.dlvErr == nil && r.corepipeErr == nil && r.corepipe.Wall > 0 && r.corepipe.CPU > 0 {
			speedWall = fmt.Sprintf("%.1fx", r.dlv.Wall.Seconds()/r.corepipe.Wall.Seconds())
			speedCPU = fmt.Sprintf("%.1fx", r.dlv.CPU.Seconds()/r.corepipe.CPU.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, mib(r.coreSize), r.want,
			secs(r.dlv.Wall), secs(r.dlv.CPU), mib(r.dlv.MaxRSS), count(r.dlvN, r.dlvErr),
			secs(r.corepipe.Wall), secs(r.corepipe.CPU), mib(r.corepipe.MaxRSS), count(r.corepipeN, r.corepipeErr), speedWall, speedCPU)
	}
	tw.Flush()
	if maxMemory > 0 {
		fmt.Fprintf(w, "corepipe analyze ran with RLIMIT_AS %d MiB\n", maxMemory>>20)
	}
	for _, r := range rows {
		if r.dlvErr != nil {
			fmt.Fprintf(w, "%s: dlv: %v\n", r.name, r.dlvErr)
		}
		if r.corepipeErr != nil {
			fmt.Fprintf(w, "%s: corepipe: %v\n", r.name, r.corepipeErr)
		}
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

func count(n int, err error) string {
	if err != nil {
		return "error"
	}
	return strconv.Itoa(n)
}

// limited keeps the first n bytes written to it.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(l.n, len(p))
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

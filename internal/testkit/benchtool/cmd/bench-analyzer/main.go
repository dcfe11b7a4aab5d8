// Command bench-analyzer compares `corepipe analyze` with `dlv core` running
// `goroutines -t` on cores the real kernel dumps in the same run: a Go
// program with many parked goroutines, one with a huge live heap, and a big
// real program nobody here wrote (a MinIO server, 150 MB with DWARF, aborted
// with SIGABRT under GOTRACEBACK=crash once it serves), where what costs is
// reading the binary's debug information. It prints wall time, peak RSS and
// the goroutines each reported, the report's size as written and as the
// analyzer stores it (compact), and deletes the cores afterwards.
// scripts/bench-analyzer.sh builds its inputs.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/benchtool"
	"github.com/corepipe/corepipe/internal/testkit/toolcache"
)

func main() {
	corepipeBin := flag.String("corepipe", "bin/corepipe", "the corepipe binary")
	dlvBin := flag.String("dlv", "dlv", "delve's dlv binary")
	goroutines := flag.Int("goroutines", 100000, "parked goroutines in the first core")
	heapMiB := flag.Int("heap-mib", 4096, "live heap of the second core, in MiB")
	scratch := flag.String("dir", os.TempDir(), "where cores are written (needs room for the heap core)")
	only := flag.String("only", "", "run the cases whose names start so: parked, heap or minio (comma-separated)")
	flag.StringVar(&minioBin, "minio", toolcache.Path("minio", toolcache.MinioVersion), "the MinIO server binary of the big-binary case (scripts/install-minio.sh builds it)")
	flag.DurationVar(&settle, "settle", 5*time.Second, "how long the MinIO server runs once it serves, before it is aborted")
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

var (
	minioBin string
	settle   time.Duration
)

type benchCase struct {
	key, name string
	// dump makes the case's core in dir and returns the executable, the
	// core and how many goroutines the runtime printed.
	dump func(dir string) (exe, core string, want int, err error)
}

type row struct {
	name                  string
	coreSize              int64
	want, dlvN, corepipeN int
	dlv, corepipe         benchtool.Usage
	dlvErr, corepipeErr   error
	reportSize, stored    int64
}

func run(corepipeBin, dlvBin, scratch, only string, goroutines, heapMiB int) error {
	cases := []benchCase{
		{"parked", fmt.Sprintf("%d parked goroutines", goroutines), program(benchtool.ParkedProgram, goroutines)},
		{"heap", fmt.Sprintf("%d MiB live heap", heapMiB), program(benchtool.HeapProgram, heapMiB)},
		{"minio", "MinIO server, SIGABRT", dumpMinio},
	}
	var rows []row
	for _, c := range cases {
		if !selected(c.key, only) {
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

// selected reports whether the case key is among the prefixes in only
// (all when only is empty).
func selected(key, only string) bool {
	if only == "" {
		return true
	}
	for p := range strings.SplitSeq(only, ",") {
		if p != "" && strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// program is the case of a program of ours that crashes by itself, given
// arg.
func program(src string, arg int) func(dir string) (string, string, int, error) {
	return func(dir string) (string, string, int, error) {
		exe, err := benchtool.Build(dir, "prog", src)
		if err != nil {
			return "", "", 0, err
		}
		core, want, err := benchtool.Dump(dir, exe, strconv.Itoa(arg))
		return exe, core, want, err
	}
}

// dumpMinio runs a MinIO server on loopback with a data directory in dir,
// lets it settle once it serves, and aborts it.
func dumpMinio(dir string) (string, string, int, error) {
	if _, err := os.Stat(minioBin); err != nil {
		return "", "", 0, fmt.Errorf("%w: scripts/install-minio.sh builds it", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return "", "", 0, err
	}
	console, err := freeAddr()
	if err != nil {
		return "", "", 0, err
	}
	data := filepath.Join(dir, "minio-data")
	cmd := exec.Command(minioBin, "server", data, "--address", addr, "--console-address", console, "--quiet")
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER=bench-analyzer", "MINIO_ROOT_PASSWORD="+strconv.FormatInt(time.Now().UnixNano(), 36)+"-secret", "MINIO_UPDATE=off")
	core, want, err := benchtool.DumpProcess(dir, cmd, func(exited <-chan struct{}) error {
		if err := waitLive("http://"+addr+"/minio/health/live", exited); err != nil {
			return err
		}
		select {
		case <-time.After(settle):
			return nil
		case <-exited:
			return errors.New("exited while it settled")
		}
	})
	return minioBin, core, want, err
}

// freeAddr returns a loopback address whose port was free a moment ago:
// MinIO takes its address on the command line.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitLive polls url until it answers 200, for up to a minute.
func waitLive(url string, exited <-chan struct{}) error {
	deadline := time.Now().Add(time.Minute)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not live after a minute: %w", err)
		}
		select {
		case <-exited:
			return errors.New("exited before it served")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func measure(dir, corepipeBin, dlvBin string, c benchCase) (row, error) {
	r := row{name: c.name}
	fmt.Fprintf(os.Stderr, "bench-analyzer: %s: making the core\n", c.name)
	exe, core, want, err := c.dump(dir)
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
		r.corepipeN, r.stored, r.corepipeErr = reportCount(report)
	}
	if st, err := os.Stat(report); err == nil {
		r.reportSize = st.Size()
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

// reportCount counts the report's goroutines one at a time, and returns
// the size of the report as the analyzer stores it: in the stored form,
// which writes each distinct stack once. The report of 100 000 goroutines
// is far bigger than what is needed to count them.
func reportCount(path string) (goroutines int, stored int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var out countWriter
	var sw *corepipe.StoredWriter
	head, err := corepipe.ReadStoredEach(bufio.NewReader(f), func(head *corepipe.Report, g corepipe.Goroutine) error {
		if sw == nil {
			if sw, err = corepipe.NewStoredWriter(&out, head); err != nil {
				return err
			}
		}
		goroutines++
		return sw.Goroutine(&g)
	})
	if err != nil {
		return 0, 0, err
	}
	if sw == nil {
		if sw, err = corepipe.NewStoredWriter(&out, head); err != nil {
			return 0, 0, err
		}
	}
	if err := sw.Close(); err != nil {
		return 0, 0, err
	}
	return goroutines, int64(out), nil
}

// countWriter counts what is written to it.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "core\tcore size\truntime printed\tdlv wall\tdlv CPU\tdlv max RSS\tdlv goroutines\tcorepipe wall\tcorepipe CPU\tcorepipe max RSS\tcorepipe goroutines\tspeedup wall\tspeedup CPU\treport\tstored\t")
	for _, r := range rows {
		speedWall, speedCPU := "-", "-"
		if r.dlvErr == nil && r.corepipeErr == nil && r.corepipe.Wall > 0 && r.corepipe.CPU > 0 {
			speedWall = fmt.Sprintf("%.1fx", r.dlv.Wall.Seconds()/r.corepipe.Wall.Seconds())
			speedCPU = fmt.Sprintf("%.1fx", r.dlv.CPU.Seconds()/r.corepipe.CPU.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, mib(r.coreSize), r.want,
			secs(r.dlv.Wall), secs(r.dlv.CPU), mib(r.dlv.MaxRSS), count(r.dlvN, r.dlvErr),
			secs(r.corepipe.Wall), secs(r.corepipe.CPU), mib(r.corepipe.MaxRSS), count(r.corepipeN, r.corepipeErr), speedWall, speedCPU,
			mb(r.reportSize), mb(r.stored))
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

// mb prints a report's size in the unit people quote files in.
func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

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

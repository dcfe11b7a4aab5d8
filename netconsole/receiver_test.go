package netconsole

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/kernlog"
)

// serve runs a receiver on a loopback port and returns a sender socket
// connected to it and the captures' channel.
func serve(t *testing.T, cfg Config) (send func(string), got <-chan *Capture) {
	t.Helper()
	ch := make(chan *Capture, 16)
	r, err := New(cfg, func(c *Capture) { ch <- c })
	if err != nil {
		t.Fatal(err)
	}
	pc, err := Listen("udp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	conn, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func(d string) {
		if _, err := conn.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
		// Loopback drops datagrams when the receiver's buffer fills; the
		// kernel's netconsole is no faster than this.
		time.Sleep(50 * time.Microsecond)
	}, ch
}

func await(t *testing.T, ch <-chan *Capture, within time.Duration) *Capture {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(within):
		t.Fatal("no capture")
		return nil
	}
}

func replay(t *testing.T, path string, send func(string)) {
	t.Helper()
	for _, d := range testkit.Datagrams(t, path) {
		send(d)
	}
}

// The datagrams Debian's 6.1 kernel sent from qemu to an extended and a
// plain target, from boot to echo c > /proc/sysrq-trigger.
func TestQemuCaptures(t *testing.T) {
	for _, name := range []string{"ext", "plain"} {
		t.Run(name, func(t *testing.T) {
			send, got := serve(t, Config{Quiet: 200 * time.Millisecond})
			replay(t, "testdata/qemu-sysrq-"+name+".jsonl", send)
			c := await(t, got, 5*time.Second)
			// The kernel never sent 124 of the extended records'
			// numbers, most of the boot's early ones: netpoll drops what
			// its queue cannot take while the target replays the boot.
			wantGaps := map[string]int{"ext": 124, "plain": 0}[name]
			if c.Extended != (name == "ext") || c.Gaps != wantGaps || c.Dropped != 0 {
				t.Errorf("extended %v gaps %d dropped %d", c.Extended, c.Gaps, c.Dropped)
			}
			k, err := kernlog.Parse(strings.NewReader(string(c.Log)))
			if err != nil {
				t.Fatalf("%v in\n%s", err, c.Log)
			}
			if k.Message != "sysrq triggered crash" || k.Release != "6.1.0-57-amd64" || k.Task == nil || k.Task.Comm != "init" || len(k.CallTrace) < 10 {
				t.Errorf("kernel %+v", k)
			}
			// Over 1000 bytes: in fragments (ncfrag) when extended, in
			// two datagrams when plain.
			if !strings.Contains(string(c.Log), "corepipe-test: "+strings.Repeat("x", 975)+"\n") {
				t.Error("the long line is not intact")
			}
			select {
			case c := <-got:
				t.Errorf("a second capture of %d bytes", len(c.Log))
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}

// A plain record over 1000 bytes arrives cut at 1000 with no marker.
func TestPlainLongLineJoined(t *testing.T) {
	send, got := serve(t, Config{Quiet: 100 * time.Millisecond})
	long := "[   12.000000] " + strings.Repeat("y", 1500)
	send(long[:PlainChunk])
	send(long[PlainChunk:] + "\n")
	send("[   12.100000] Kernel panic - not syncing: x\n")
	c := await(t, got, 5*time.Second)
	if want := long + "\n[   12.100000] Kernel panic - not syncing: x\n"; string(c.Log) != want {
		t.Errorf("log %q", c.Log)
	}
}

func TestExtendedFragmentsReorderGaps(t *testing.T) {
	send, got := serve(t, Config{Quiet: 200 * time.Millisecond})
	long := "BUG: " + strings.Repeat("z", 2200)
	body := long + "\n SUBSYSTEM=pci\n node=worker-7"
	frag := func(seq, off, n int) string {
		end := min(off+n, len(body))
		return fmt.Sprintf("6.4.0,1,%d,5000000,-,ncfrag=%d/%d;%s", seq, off, len(body), body[off:end])
	}
	send("6,10,4000000,-;first \\x5cx41 caf\\xc3\\xa9\n SUBSYSTEM=acpi")
	// 11 is fragmented, its pieces reordered; 12 arrives before 11's
	// end; 13 never arrives; 15's middle fragment is lost.
	send(frag(11, 900, 900))
	send("0,12,5000001,-;Kernel panic - not syncing: Fatal exception")
	send(frag(11, 0, 900))
	send(frag(11, 1800, 900))
	send("4,14,5000003,-;CPU: 0 PID: 1 Comm: init Not tainted 6.4.0 #1")
	lost := strings.Repeat("w", 1500)
	send(fmt.Sprintf("4,15,5000004,-,ncfrag=0/%d;%s", len(lost), lost[:600]))
	send(fmt.Sprintf("4,15,5000004,-,ncfrag=1200/%d;%s", len(lost), lost[1200:]))
	c := await(t, got, 5*time.Second)
	lines := strings.Split(strings.TrimSuffix(string(c.Log), "\n"), "\n")
	want := []string{
		"<6>[    4.000000] first \\x41 café",
		"<1>[    5.000000] " + long,
		"<0>[    5.000001] Kernel panic - not syncing: Fatal exception",
		"<4>[    5.000003] CPU: 0 PID: 1 Comm: init Not tainted 6.4.0 #1",
		"<4>[    5.000004] " + lost[:600] + lost[1200:] + " [fragments lost]",
	}
	if len(lines) != len(want) {
		t.Fatalf("lines:\n%s", c.Log)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: %.80q, want %.80q", i, lines[i], want[i])
		}
	}
	if c.Node != "worker-7" || c.Gaps != 1 || c.MissingFragments != 1 {
		t.Errorf("node %q gaps %d missing %d", c.Node, c.Gaps, c.MissingFragments)
	}
}

// The end marker hands the log over without waiting for the sender to be
// quiet.
func TestEndMarkerHandsOverAtOnce(t *testing.T) {
	send, got := serve(t, Config{Quiet: time.Hour})
	send("0,1,1,-;Kernel panic - not syncing: x")
	send("0,2,2,-;---[ end Kernel panic - not syncing: x ]---")
	c := await(t, got, 5*time.Second)
	if !c.Ended {
		t.Error("not marked ended")
	}
}

func TestNoPanicNoCapture(t *testing.T) {
	send, got := serve(t, Config{Quiet: 50 * time.Millisecond})
	for i := range 100 {
		send(fmt.Sprintf("6,%d,%d,-;hello %d", i, i, i))
	}
	select {
	case c := <-got:
		t.Fatalf("capture %q", c.Log)
	case <-time.After(300 * time.Millisecond):
	}
}

// A sender over its rate loses datagrams, not the receiver its memory.
func TestRateLimitOverSocket(t *testing.T) {
	send, got := serve(t, Config{Quiet: 200 * time.Millisecond, Rate: 10, Burst: 20})
	for i := range 200 {
		send(fmt.Sprintf("6,%d,%d,-;line %d", i, i, i))
	}
	send("0,1000,1000,-;Kernel panic - not syncing: x")
	time.Sleep(300 * time.Millisecond) // refill
	send("0,1001,1001,-;Kernel panic - not syncing: y")
	c := await(t, got, 5*time.Second)
	if c.RateLimited == 0 || strings.Count(string(c.Log), "\n") > 30 {
		t.Errorf("rate limited %d, %d lines", c.RateLimited, strings.Count(string(c.Log), "\n"))
	}
}

// Spoofed senders by the thousand stay within the bounds and do not push
// out a sender whose panic is pending.
func TestManySendersBounded(t *testing.T) {
	var got []*Capture
	cfg := Config{Quiet: time.Second, MaxSources: 100, MaxSourceBytes: 64 << 10, MaxTotalBytes: 1 << 20}
	r, err := New(cfg, func(c *Capture) { got = append(got, c) })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	r.Datagram(now, "10.0.0.1:6665", []byte("0,1,1,-;Kernel panic - not syncing: real"))
	big := strings.Repeat("s", 900)
	for i := range 20000 {
		now = now.Add(time.Microsecond)
		r.Datagram(now, fmt.Sprintf("10.%d.%d.%d:6665", i>>16&255, i>>8&255, i&255), []byte(fmt.Sprintf("6,%d,0,-;%s", i, big)))
		if r.total > cfg.MaxTotalBytes || len(r.sources) > cfg.MaxSources {
			t.Fatalf("after %d senders: %d bytes, %d sources", i, r.total, len(r.sources))
		}
	}
	// One sender flooding distinct sequence numbers stays in its ring.
	for i := range 5000 {
		r.Datagram(now, "10.9.9.9:6665", []byte(fmt.Sprintf("6,%d,0,-;%s", i, big)))
	}
	if s := r.sources["10.9.9.9:6665"]; s == nil || s.bytes > cfg.MaxSourceBytes || s.dropped == 0 {
		t.Fatalf("flooding sender %+v", s)
	}
	r.Sweep(now.Add(2 * time.Second))
	if len(got) != 1 || got[0].Sender != "10.0.0.1:6665" {
		t.Fatalf("captures %d", len(got))
	}
}

func TestParseExtended(t *testing.T) {
	r, err := ParseExtended([]byte("6.4.0,14,444,1234,c,caller=T1,ncfrag=0/30;text"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Release != "6.4.0" || r.Facility != 1 || r.Level != 6 || r.Seq != 444 || r.Usec != 1234 || !r.Cont || r.FragLen != 30 || string(r.Body) != "text" {
		t.Errorf("%+v", r)
	}
	for _, bad := range []string{"plain text; with a semicolon", "1,2,3;x", "6,1,1,-,ncfrag=5/2;x", "6,1,1,-,ncfrag=0/99999;x", "6,1,1,-,ncfrag=0/2;xyz"} {
		if _, err := ParseExtended([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzDatagrams(f *testing.F) {
	f.Add("6,1,1,-;Kernel panic - not syncing: x", "0,2,2,-,ncfrag=0/20;---[ end Kernel pa")
	f.Add("[ 1.0] Kernel panic - not syncing: x\n", strings.Repeat("q", PlainChunk))
	f.Fuzz(func(t *testing.T, a, b string) {
		cfg := Config{Quiet: time.Second, MaxSources: 4, MaxSourceBytes: 4 * MaxRecord, MaxTotalBytes: 8 * MaxRecord}
		r, err := New(cfg, func(c *Capture) { kernlog.Parse(strings.NewReader(string(c.Log))) })
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(1, 0)
		for i := range 50 {
			r.Datagram(now, fmt.Sprint(i%6), []byte(a))
			r.Datagram(now, fmt.Sprint(i%5), []byte(b))
			if r.total > cfg.MaxTotalBytes+cfg.MaxSources*(MaxRecord*2*maxPendingFragments+MaxRecord) {
				t.Fatalf("%d bytes", r.total)
			}
		}
		r.Flush(now)
	})
}

package main

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/fs"
	"github.com/corepipe/corepipe/internal/testkit"
	natsq "github.com/corepipe/corepipe/queue/nats"
)

// corepipe kpanic on a real JetStream and blob store: a real capture sent
// twice, as a replay would, is one crash on the queue, with its console
// log stored where the manifest says.
func TestKpanicCommand(t *testing.T) {
	dir := t.TempDir()
	emb, err := natsq.StartEmbedded(natsq.EmbeddedOptions{StoreDir: filepath.Join(dir, "nats"), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := udp.LocalAddr().String()
	udp.Close()
	blobDir := filepath.Join(dir, "blobs")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runCLI(ctx, &testkit.SyncBuffer{}, nil, "kpanic", "--listen", "udp://"+addr, "--blob", "file://"+blobDir,
			"--nats", emb.ClientURL(), "--netconsole-quiet", "300ms")
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(500 * time.Millisecond) // the receiver's socket
	replay(t, addr, extCapture)
	time.Sleep(time.Second) // quiet: the first capture is handed over
	replay(t, addr, extCapture)

	crashes := queuedCrashes(t, ctx, emb.ClientURL())
	if len(crashes) != 1 {
		t.Fatalf("%d crashes on the queue for one panic sent twice", len(crashes))
	}
	c := crashes[0]
	if c.Console == nil || c.Console.Source != corepipe.SourceNetconsole || c.Node != "127.0.0.1" {
		t.Fatalf("crash %+v console %+v", c, c.Console)
	}
	blobs, err := fs.Open(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{c.Console.Key, corepipe.ManifestKey(&c)} {
		if n, err := blobs.Stat(ctx, key); err != nil || n == 0 {
			t.Errorf("%s: %d bytes, %v", key, n, err)
		}
	}
}

// extCapture is what Debian's 6.1 kernel sent to an extended netconsole
// target as it panicked (sysrq-c, in qemu): one datagram a line, as JSON
// strings.
const extCapture = "../../netconsole/testdata/qemu-sysrq-ext.jsonl"

// replay sends capture's datagrams to addr, paced as a kernel sends them.
func replay(t *testing.T, addr, capture string) {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, d := range testkit.Datagrams(t, capture) {
		conn.Write([]byte(d))
		time.Sleep(50 * time.Microsecond)
	}
}

// queuedCrashes takes every crash on the queue at url, waiting 3 s for
// more after the last.
func queuedCrashes(t *testing.T, ctx context.Context, url string) []corepipe.Crash {
	t.Helper()
	q, err := natsq.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	cons, err := q.Crashes(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	var crashes []corepipe.Crash
	for {
		nctx, ncancel := context.WithTimeout(ctx, 3*time.Second)
		msg, err := cons.Next(nctx)
		ncancel()
		if err != nil {
			return crashes
		}
		var c corepipe.Crash
		if err := json.Unmarshal(msg.Data(), &c); err != nil {
			t.Fatal(err)
		}
		msg.Ack(ctx)
		crashes = append(crashes, c)
	}
}

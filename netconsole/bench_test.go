package netconsole

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// BenchmarkDatagram is the receiver's cost per extended datagram from one
// of 1000 senders, each numbering its records onwards, the rings full
// (steady state). Building the datagram is part of the loop.
func BenchmarkDatagram(b *testing.B) {
	r, err := New(Config{}, func(*Capture) {})
	if err != nil {
		b.Fatal(err)
	}
	senders := make([]string, 1000)
	for i := range senders {
		senders[i] = fmt.Sprintf("10.0.%d.%d:6665", i/250, i%250)
	}
	const text = ",123456,-;e1000 0000:00:03.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: RX"
	buf := make([]byte, 0, 256)
	now := time.Unix(0, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = append(strconv.AppendInt(append(buf[:0], "6,"...), int64(i/len(senders)), 10), text...)
		r.Datagram(now, senders[i%len(senders)], buf)
	}
}

package netconsole

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Config bounds a Receiver. Zero fields take the defaults.
type Config struct {
	// Quiet is how long a sender that printed a panic must stay silent
	// before its log is handed over (default 5 s); "---[ end Kernel
	// panic" hands it over at once.
	Quiet time.Duration
	// MaxSources is how many senders are tracked at once (default 4096);
	// the least recently heard one, preferring those without a panic,
	// makes room for a new one.
	MaxSources int
	// MaxSourceBytes bounds one sender's ring of recent lines (default
	// 256 KiB): the oldest lines go first.
	MaxSourceBytes int
	// MaxTotalBytes bounds every sender's rings together (default 64 MiB).
	MaxTotalBytes int
	// Rate and Burst are each sender's datagrams per second and burst
	// (defaults 2000 and 8192: an extended target replays the whole
	// kernel buffer when it starts).
	Rate  float64
	Burst int
	// Logger receives one line per capture and per dropped sender.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Quiet == 0 {
		c.Quiet = 5 * time.Second
	}
	if c.MaxSources == 0 {
		c.MaxSources = 4096
	}
	if c.MaxSourceBytes == 0 {
		c.MaxSourceBytes = 256 << 10
	}
	if c.MaxTotalBytes == 0 {
		c.MaxTotalBytes = 64 << 20
	}
	if c.Rate == 0 {
		c.Rate = 2000
	}
	if c.Burst == 0 {
		c.Burst = 8192
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Quiet < 0, c.MaxSources < 0, c.Rate < 0, c.Burst < 0:
		return errors.New("netconsole: negative bound")
	case c.MaxSourceBytes < 4*MaxRecord:
		return fmt.Errorf("netconsole: MaxSourceBytes %d is under %d, too small for a panic", c.MaxSourceBytes, 4*MaxRecord)
	case c.MaxTotalBytes < c.MaxSourceBytes:
		return errors.New("netconsole: MaxTotalBytes is under MaxSourceBytes")
	}
	return nil
}

// Capture is a sender's console log around its kernel's panic.
type Capture struct {
	// Sender is the address the datagrams came from; Node the name the
	// kernel gave itself in its userdata (node=…), when it did.
	Sender   string
	Node     string
	Extended bool
	// Source is where the log was read: corepipe.SourceNetconsole when
	// empty. The agent's reader of what survived a reboot sets
	// SourcePstore or SourceKdump, with Sender the file it read and Node
	// its own name.
	Source string
	// Log is the reassembled console log, one record a line, in the
	// sender's order ("<level>[sec.usec] text" for extended records).
	Log []byte
	// FirstAt is when the oldest line kept arrived, PanicAt when the
	// panic line did, LastAt when the sender was last heard.
	FirstAt, PanicAt, LastAt time.Time
	// Ended is set when the kernel printed "---[ end Kernel panic".
	Ended bool
	// Gaps is how many numbered records never arrived; MissingFragments
	// how many records arrived in part; Dropped how many old lines the
	// ring let go; RateLimited how many datagrams were over the rate.
	Gaps, MissingFragments, Dropped, RateLimited int
}

// line is one record kept in a sender's ring.
type line struct {
	seq   uint64 // extended only
	usec  uint64
	level int
	text  string
}

func (l *line) size() int { return len(l.text) + 48 }

type source struct {
	addr     string
	node     string
	elem     *list.Element
	extended bool
	lines    []line // extended: in sequence order; plain: arrival order
	bytes    int
	dropped  int
	// partial is a plain line cut at PlainChunk, awaiting the rest.
	partial []byte
	frags   map[uint64]*fragments
	// missing counts records handed over with fragments lost.
	missing     int
	rateLimited int
	firstAt     time.Time
	lastAt      time.Time
	panicAt     time.Time
	ended       bool
	tokens      float64
	tokensAt    time.Time
}

// maxPendingFragments bounds the records a sender may have half-arrived.
const maxPendingFragments = 8

// Receiver keeps the recent console lines of every sender and emits a
// Capture when one panics. Its state belongs to the goroutine in Serve.
type Receiver struct {
	cfg     Config
	emit    func(*Capture)
	sources map[string]*source
	lru     *list.List // front: most recently heard
	total   int
}

// New returns a receiver that calls emit, from Serve's goroutine, with
// each panic's capture.
func New(cfg Config, emit func(*Capture)) (*Receiver, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Receiver{cfg: cfg, emit: emit, sources: map[string]*source{}, lru: list.New()}, nil
}

// Listen opens a UDP socket for "udp://ADDR:PORT" or "ADDR:PORT".
func Listen(addr string) (net.PacketConn, error) {
	hostport := strings.TrimPrefix(addr, "udp://")
	if _, err := netip.ParseAddrPort(hostport); err != nil {
		return nil, fmt.Errorf("netconsole listen address %q: want udp://IP:PORT", addr)
	}
	pc, err := net.ListenPacket("udp", hostport)
	if err != nil {
		return nil, fmt.Errorf("netconsole: %w", err)
	}
	return pc, nil
}

// Serve reads datagrams from pc until ctx is done, then closes pc. A
// sender whose panic has not yet been handed over is handed over then.
func (r *Receiver) Serve(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Now()) })
	defer stop()
	defer pc.Close()
	tick := r.cfg.Quiet / 4
	if tick < 20*time.Millisecond {
		tick = 20 * time.Millisecond
	}
	buf := make([]byte, 64<<10)
	next := time.Now().Add(tick)
	for {
		pc.SetReadDeadline(next)
		n, addr, err := pc.ReadFrom(buf)
		now := time.Now()
		if n > 0 && addr != nil {
			r.Datagram(now, addr.String(), buf[:n])
		}
		if ctx.Err() != nil {
			r.Flush(now)
			return nil
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return fmt.Errorf("netconsole: read: %w", err)
		}
		if !now.Before(next) {
			r.Sweep(now)
			next = now.Add(tick)
		}
	}
}

// Datagram takes one datagram from sender at now.
func (r *Receiver) Datagram(now time.Time, sender string, b []byte) {
	s := r.source(now, sender)
	if !s.allow(now, r.cfg.Rate, r.cfg.Burst) {
		s.rateLimited++
		return
	}
	s.lastAt = now
	r.lru.MoveToFront(s.elem)
	if rec, err := ParseExtended(b); err == nil {
		s.extended = true
		r.extendedRecord(now, s, rec)
	} else if !s.extended {
		r.plain(now, s, b)
	}
	r.enforceTotal()
}

func (s *source) allow(now time.Time, rate float64, burst int) bool {
	if s.tokensAt.IsZero() {
		s.tokens = float64(burst)
	} else {
		s.tokens += now.Sub(s.tokensAt).Seconds() * rate
		if s.tokens > float64(burst) {
			s.tokens = float64(burst)
		}
	}
	s.tokensAt = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

func (r *Receiver) source(now time.Time, sender string) *source {
	if s, ok := r.sources[sender]; ok {
		return s
	}
	for len(r.sources) >= r.cfg.MaxSources && r.lru.Len() > 0 {
		r.evict()
	}
	s := &source{addr: sender, firstAt: now}
	s.elem = r.lru.PushFront(s)
	r.sources[sender] = s
	return s
}

// evict drops the least recently heard sender, preferring one without a
// panic among the oldest few, so that a flood of spoofed senders cannot
// push out a dying node's log unless it is itself the oldest.
func (r *Receiver) evict() {
	victim := r.lru.Back()
	for e, i := victim, 0; e != nil && i < 16; e, i = e.Prev(), i+1 {
		if e.Value.(*source).panicAt.IsZero() {
			victim = e
			break
		}
	}
	s := victim.Value.(*source)
	if !s.panicAt.IsZero() {
		r.cfg.Logger.Warn("netconsole: dropping a sender's panic to stay within bounds", "sender", s.addr)
	}
	r.remove(s)
}

func (r *Receiver) remove(s *source) {
	r.total -= s.bytes + len(s.partial) + s.fragBytes()
	r.lru.Remove(s.elem)
	delete(r.sources, s.addr)
}

func (s *source) fragBytes() int {
	n := 0
	for _, f := range s.frags {
		n += 2 * len(f.buf)
	}
	return n
}

func (r *Receiver) enforceTotal() {
	for r.total > r.cfg.MaxTotalBytes && r.lru.Len() > 1 {
		r.evict()
	}
}

func (r *Receiver) plain(now time.Time, s *source, b []byte) {
	before := len(s.partial)
	data := append(s.partial, b...)
	s.partial = nil
	r.total -= before
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			// The rest of a line cut at PlainChunk comes in the next
			// datagram; a record is never longer than MaxRecord.
			if len(data) > MaxRecord {
				data = data[:MaxRecord]
			}
			s.partial = append([]byte(nil), data...)
			r.total += len(s.partial)
			return
		}
		r.add(now, s, line{level: -1, text: strings.TrimRight(string(data[:i]), "\r")})
		data = data[i+1:]
	}
}

func (r *Receiver) extendedRecord(now time.Time, s *source, rec Record) {
	body := rec.Body
	if rec.FragLen > 0 {
		f := s.frags[rec.Seq]
		if f == nil {
			if len(s.frags) >= maxPendingFragments {
				r.flushFragments(now, s, 1)
			}
			if s.frags == nil {
				s.frags = map[uint64]*fragments{}
			}
			f = newFragments(rec.FragLen)
			f.usec, f.level = rec.Usec, rec.Level
			s.frags[rec.Seq] = f
			r.total += 2 * rec.FragLen
		}
		if len(f.buf) != rec.FragLen {
			return // a fragment disagreeing on its record's length
		}
		if !f.add(rec.FragOff, body) {
			return
		}
		delete(s.frags, rec.Seq)
		r.total -= 2 * rec.FragLen
		body = f.buf
	}
	r.addExtended(now, s, rec.Seq, rec.Usec, rec.Level, body)
}

func (r *Receiver) addExtended(now time.Time, s *source, seq, usec uint64, level int, body []byte) {
	text, dict := SplitBody(body)
	for _, kv := range dict {
		if v, ok := strings.CutPrefix(kv, "node="); ok && v != "" && len(v) <= 253 {
			s.node = v
		}
	}
	if n := len(s.lines); n > 0 && seq+1024 < s.lines[n-1].seq {
		// Numbering restarted: the sender rebooted.
		if !s.panicAt.IsZero() {
			r.handOver(s)
		}
		r.reset(s)
	}
	r.add(now, s, line{seq: seq, usec: usec, level: level, text: text})
}

// flushFragments gives up on the n oldest half-arrived records, keeping
// what came of them.
func (r *Receiver) flushFragments(now time.Time, s *source, n int) {
	seqs := make([]uint64, 0, len(s.frags))
	for seq := range s.frags {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs[:min(n, len(seqs))] {
		f := s.frags[seq]
		delete(s.frags, seq)
		r.total -= 2 * len(f.buf)
		s.missing++
		r.add(now, s, line{seq: seq, usec: f.usec, level: f.level, text: string(bytes.TrimRight(f.partial(), "\n")) + " [fragments lost]"})
	}
}

// add puts l in s's ring, in order, and notes a panic.
func (r *Receiver) add(now time.Time, s *source, l line) {
	if len(l.text) > MaxRecord {
		l.text = l.text[:MaxRecord]
	}
	if !s.extended && strings.Contains(l.text, "Linux version ") && !s.panicAt.IsZero() {
		r.handOver(s)
		r.reset(s)
	}
	if len(s.lines) == 0 {
		s.firstAt = now
	}
	i := len(s.lines)
	if s.extended {
		i = sort.Search(len(s.lines), func(j int) bool { return s.lines[j].seq >= l.seq })
		if i < len(s.lines) && s.lines[i].seq == l.seq {
			return // a duplicate
		}
	}
	s.lines = append(s.lines, line{})
	copy(s.lines[i+1:], s.lines[i:])
	s.lines[i] = l
	s.bytes += l.size()
	r.total += l.size()
	for s.bytes > r.cfg.MaxSourceBytes && len(s.lines) > 1 {
		s.bytes -= s.lines[0].size()
		r.total -= s.lines[0].size()
		s.lines[0] = line{}
		s.lines = s.lines[1:]
		s.dropped++
	}
	if strings.Contains(l.text, "Kernel panic - not syncing") && s.panicAt.IsZero() {
		s.panicAt = now
	}
	if strings.Contains(l.text, "---[ end Kernel panic") && !s.panicAt.IsZero() {
		s.ended = true
		r.handOver(s)
		r.reset(s)
	}
}

func (r *Receiver) reset(s *source) {
	r.total -= s.bytes
	s.lines, s.bytes, s.dropped, s.missing, s.rateLimited = nil, 0, 0, 0, 0
	s.panicAt, s.ended = time.Time{}, false
}

// Sweep hands over the panics of senders quiet since Quiet before now,
// and forgets senders without one that have been quiet ten times as long.
func (r *Receiver) Sweep(now time.Time) {
	for e := r.lru.Back(); e != nil; {
		s := e.Value.(*source)
		prev := e.Prev()
		quiet := now.Sub(s.lastAt)
		switch {
		case !s.panicAt.IsZero() && quiet >= r.cfg.Quiet:
			r.flushFragments(now, s, len(s.frags))
			r.handOver(s)
			r.reset(s)
		case s.panicAt.IsZero() && quiet >= 10*r.cfg.Quiet && quiet >= time.Minute:
			r.remove(s)
		}
		e = prev
	}
}

// Flush hands over every pending panic at once (on shutdown).
func (r *Receiver) Flush(now time.Time) {
	for _, s := range r.sources {
		if !s.panicAt.IsZero() {
			r.flushFragments(now, s, len(s.frags))
			r.handOver(s)
			r.reset(s)
		}
	}
}

func (r *Receiver) handOver(s *source) {
	c := &Capture{
		Sender: s.addr, Node: s.node, Extended: s.extended,
		FirstAt: s.firstAt, PanicAt: s.panicAt, LastAt: s.lastAt, Ended: s.ended,
		MissingFragments: s.missing, Dropped: s.dropped, RateLimited: s.rateLimited,
	}
	var b bytes.Buffer
	for i, l := range s.lines {
		if s.extended {
			if i > 0 && l.seq > s.lines[i-1].seq+1 {
				c.Gaps += int(l.seq - s.lines[i-1].seq - 1)
			}
			if l.level >= 0 {
				fmt.Fprintf(&b, "<%d>", l.level)
			}
			fmt.Fprintf(&b, "[%5d.%06d] ", l.usec/1e6, l.usec%1e6)
		}
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	c.Log = b.Bytes()
	r.cfg.Logger.Info("netconsole: kernel panic captured", "sender", c.Sender, "node", c.Node, "bytes", len(c.Log),
		"gaps", c.Gaps, "missing_fragments", c.MissingFragments, "dropped", c.Dropped)
	r.emit(c)
}

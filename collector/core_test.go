package collector

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestEncoderPick checks the choice streamCore makes per chunk: bytes that
// sample as random skip Huffman coding of literals, which could not shrink
// them, and anything a Huffman table shrinks keeps it. Both kinds of frame
// decode to the chunk, and the choice costs neither its ratio.
func TestEncoderPick(t *testing.T) {
	enc, err := newEncoders(1)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	rng := rand.New(rand.NewPCG(1, 2))

	random := make([]byte, chunkSize)
	rand.NewChaCha8([32]byte{1}).Read(random)
	pages := make([]byte, chunkSize) // a third zero pages, as a Go heap of random data
	if _, err := io.ReadFull(newCoreStream(chunkSize, 3), pages); err != nil {
		t.Fatal(err)
	}
	// Pointers into one arena and small integers: what most heap words are.
	heap := make([]byte, chunkSize)
	for i := 0; i < len(heap); i += 8 {
		v := rng.Uint64N(1 << 12)
		if i%16 == 0 {
			v = 0xc000000000 + rng.Uint64N(1<<24)&^7
		}
		binary.LittleEndian.PutUint64(heap[i:], v)
	}
	text := bytes.Repeat([]byte("panic: runtime error: invalid memory address or nil pointer dereference\n"), chunkSize/72)
	for i := range text {
		text[i] ^= byte(rng.Uint32N(4)) // not one long repeat: literals
	}

	for _, tc := range []struct {
		name string
		b    []byte
		want *zstd.Encoder
	}{
		{"random", random, enc.flat},
		{"random and zero pages", pages, enc.flat},
		{"heap words", heap, enc.full},
		{"text", text, enc.full},
		{"zeros", make([]byte, chunkSize), enc.full},
		{"too short to sample", random[:samples*sampleSize-1], enc.full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := enc.pick(tc.b)
			if got != tc.want {
				t.Errorf("picked the %s encoder", encoderName(enc, got))
			}
			full := enc.full.EncodeAll(tc.b, nil)
			flat := enc.flat.EncodeAll(tc.b, nil)
			dec, err := zstd.NewReader(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			for _, frame := range [][]byte{full, flat} {
				if raw, err := dec.DecodeAll(frame, nil); err != nil || !bytes.Equal(raw, tc.b) {
					t.Fatalf("frame does not decode to the chunk: %v", err)
				}
			}
			// What the skipped Huffman table would have saved, at most.
			picked, other := len(full), len(flat)
			if got == enc.flat {
				picked, other = other, picked
			}
			t.Logf("%d bytes: full %d, flat %d", len(tc.b), len(full), len(flat))
			if picked > other+other/100+64 {
				t.Errorf("picked frame %d bytes, the other %d", picked, other)
			}
		})
	}
}

func encoderName(e encoders, x *zstd.Encoder) string {
	if x == e.flat {
		return "flat"
	}
	return "full"
}

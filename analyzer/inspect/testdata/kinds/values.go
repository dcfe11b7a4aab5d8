package main

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Panic values of every predeclared kind, plain and named, which the
// runtime prints each in its own way (printpanicval, printanycustomtype).
type (
	myBool       bool
	myInt        int
	myInt8       int8
	myInt16      int16
	myInt32      int32
	myInt64      int64
	myUint       uint
	myUint8      uint8
	myUint16     uint16
	myUint32     uint32
	myUint64     uint64
	myUintptr    uintptr
	myFloat32    float32
	myFloat64    float64
	MyComplex64  complex64
	MyComplex128 complex128
	myString     string
)

// panickingError's Error panics: the runtime throws while it prints it.
type panickingError struct{}

func (panickingError) Error() string { panic("error method failed") }

// addrStringer is a Stringer with a pointer receiver.
type addrStringer struct{ name string }

func (s *addrStringer) String() string { return "stringer " + s.name }

// values maps a crash kind to the value it panics with.
var values = map[string]any{
	"bool":           true,
	"mybool":         myBool(false),
	"int":            -42,
	"myint":          myInt(-42),
	"int8":           int8(-128),
	"myint8":         myInt8(127),
	"int16":          int16(-32768),
	"myint16":        myInt16(1600),
	"int32":          int32(-2147483648),
	"myint32":        myInt32(320000),
	"int64":          int64(-1 << 62),
	"myint64":        myInt64(1 << 40),
	"uint":           uint(42),
	"myuint":         myUint(7),
	"uint8":          uint8(255),
	"myuint8":        myUint8(200),
	"uint16":         uint16(65535),
	"myuint16":       myUint16(1),
	"uint32":         uint32(4000000000),
	"myuint32":       myUint32(0),
	"uint64":         uint64(1<<64 - 1),
	"myuint64":       myUint64(1 << 63),
	"uintptr":        uintptr(0xdeadbeef),
	"myuintptr":      myUintptr(0x1000),
	"float32":        float32(0.1),
	"myfloat32":      myFloat32(-3.5),
	"float64":        -2.25e-10,
	"myfloat64":      myFloat64(32.1),
	"inf":            math.Inf(1),
	"nan":            math.NaN(),
	"myinf":          myFloat64(math.Inf(-1)),
	"complex64":      complex64(1 + 2i),
	"mycomplex64":    MyComplex64(complex(float32(0.1), -1)),
	"complex128":     32.1 + 10i,
	"mycomplex128":   MyComplex128(32.1 + 10i),
	"multiline":      "first line\nsecond line",
	"mystring":       myString("named\nstring"),
	"wrappederror":   fmt.Errorf("save config: %w", errors.New("disk full")),
	"multilineerror": errors.New("query failed:\n\tno rows"),
	"addrstringer":   &addrStringer{name: "db"},
	"pointer":        new(int),
	"slice":          []int{1, 2},
	"map":            map[string]int{},
	"func":           func() {},
	"array":          [2]int{1, 2},
}

func init() {
	for name, v := range values {
		kinds["value-"+name] = func() { panicWith(v) }
	}
	kinds["value-nil"] = func() { panicWith(nil) }
	kinds["value-panickingerror"] = func() { panicWith(panickingError{}) }
	kinds["chain-three"] = chainThree
	kinds["chain-fatal"] = func() { chainFatal("first failure") }
	kinds["chain-fatal-error"] = func() { chainFatal(errors.New("first failure")) }
	kinds["chain-recovered-fatal"] = chainRecoveredFatal
	kinds["chain-goexit"] = chainGoexit
}

// panicWith panics with v from a function of its own, which titles name.
//
//go:noinline
func panicWith(v any) { panic(v) }

// chainThree panics in two deferred calls while panicking.
//
//go:noinline
func chainThree() {
	defer func() { panic("third") }()
	defer func() { panic(myInt(2)) }()
	panic("first")
}

// chainFatal unlocks an unlocked mutex in a deferred call while panicking
// with v: the runtime prints the panic, then the fatal error.
//
//go:noinline
func chainFatal(v any) {
	var mu sync.Mutex
	defer mu.Unlock()
	panic(v)
}

// chainRecoveredFatal recovers, panics again, and dies of a fatal error in
// a deferred call of that second panic.
//
//go:noinline
func chainRecoveredFatal() {
	var mu sync.Mutex
	defer mu.Unlock()
	defer func() {
		recover()
		panic("second")
	}()
	panic("first")
}

// chainGoexit panics in a deferred call run by runtime.Goexit, which the
// runtime leaves out of the chain it prints.
func chainGoexit() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { panic("during goexit") }()
		runtime.Goexit()
	}()
	<-done
	select {}
}

package crashtest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/corepipe/corepipe/buildid"
)

// BuildIDs reads the build IDs in the ELF notes of the executable at path,
// failing the test if the file cannot be read or parsed.
func BuildIDs(t testing.TB, path string) buildid.IDs {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, err := buildid.Read(f)
	if err != nil {
		t.Fatalf("build IDs of %s: %v", path, err)
	}
	return ids
}

// SplitDebug is the recipe for shipping stripped binaries: objcopy keeps
// exe's debug information in exe+".debug", which it returns, and writes
// exe without symbols to shipped. It skips the test where objcopy is not
// installed.
func SplitDebug(t testing.TB, exe, shipped string) (debug string) {
	t.Helper()
	if _, err := exec.LookPath("objcopy"); err != nil {
		t.Skip("SKIP: objcopy is not installed")
	}
	debug = exe + ".debug"
	for _, args := range [][]string{
		{"--only-keep-debug", exe, debug},
		{"--strip-all", exe, shipped},
	} {
		if out, err := exec.Command("objcopy", args...).CombinedOutput(); err != nil {
			t.Fatalf("objcopy %v: %v\n%s", args, err, out)
		}
	}
	return debug
}

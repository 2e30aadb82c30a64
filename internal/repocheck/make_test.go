package repocheck

import (
	"archive/zip"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// makePackage runs `make package` at the repository's root and returns the
// extension zips it says it built, read into memory.
func makePackage(t *testing.T) map[string][]byte {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "package")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "not built yet") {
		t.Errorf("make package does not say what it does not build yet:\n%s", out)
	}
	built := regexp.MustCompile(`(?m)^dist/berth-extension-[^ ]+-(linux|windows)\.zip$`).FindAllString(string(out), -1)
	if len(built) != 2 {
		t.Fatalf("make package named %d extension zips; want linux and windows:\n%s", len(built), out)
	}
	zips := map[string][]byte{}
	for _, p := range built {
		b, err := os.ReadFile(filepath.Join("../..", p))
		if err != nil {
			t.Fatal(err)
		}
		zips[p] = b
	}
	return zips
}

// make package builds SPEC's VM extension zips — HandlerManifest.json at
// the root, the agent under bin/ — and builds them again byte for byte.
func TestMakePackageBuildsTheExtensionZips(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both platforms' binaries")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make on this machine")
	}
	first := makePackage(t)
	for p, b := range first {
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		bin := "bin/berth-agent"
		if strings.HasSuffix(p, "-windows.zip") {
			bin += ".exe"
		}
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
		}
		if strings.Join(names, " ") != "HandlerManifest.json "+bin {
			t.Errorf("%s holds %v; want HandlerManifest.json and %s", p, names, bin)
		}
	}
	second := makePackage(t)
	for p, b := range first {
		if !bytes.Equal(b, second[p]) {
			t.Errorf("%s differs between two runs of make package", p)
		}
	}
}

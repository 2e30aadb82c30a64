package main

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/packaging/authenticode"
	"github.com/berthhq/berth/packaging/authenticode/authenticodetest"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// testVersion is given on the make line so that the names do not depend
// on the checkout's tags; a commit after a tag exercises the mapping.
const (
	testVersion = "v1.2.3-4-gabc1234"
	testName    = "1.2.3+4.gabc1234"
	testEpoch   = "1733300000"
)

// makePackage runs `make package` into dist with the test's signing
// certificate and release repository, and returns the files it wrote.
func makePackage(t *testing.T, ca authenticodetest.Files, dist, repo string) map[string][]byte {
	t.Helper()
	if err := tufrepo.Init(repo); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "package", "VERSION="+testVersion, "COMMIT=abc1234", "DIST="+dist,
		"SOURCE_DATE_EPOCH="+testEpoch, "SIGN_CERT="+ca.Cert, "SIGN_KEY="+ca.Key, "RELEASE_REPO="+repo)
	cmd.Dir = testenv.RepoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	t.Logf("make package:\n%s", out)
	files := map[string][]byte{}
	ents, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dist, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
		if !strings.Contains(string(out), filepath.Join(dist, e.Name())) {
			t.Errorf("make package wrote %s without a progress line for it", e.Name())
		}
	}
	if regexp.MustCompile(`(?i)level=(warn|error)`).Match(out) {
		t.Errorf("make package warned with a signing certificate given:\n%s", out)
	}
	return files
}

// Two runs of make package from one tree give byte-identical dist/
// files, signed ones included, named as SPEC "Packaging" says; the
// signed exes verify against the test CA; the release repository
// verifies with the agent's own TUF client and holds the agent packages
// for linux and windows; the extension zips have HandlerManifest.json at
// their root.
func TestMakePackageReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds four binaries twice")
	}
	testenv.NeedBinary(t, "make")
	testenv.NeedBinary(t, authenticode.Tool)
	ca := authenticodetest.NewCA(t)
	work := t.TempDir()
	first := makePackage(t, ca, filepath.Join(work, "dist1"), filepath.Join(work, "repo1"))
	second := makePackage(t, ca, filepath.Join(work, "dist2"), filepath.Join(work, "repo2"))

	var names []string
	for n := range first {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{
		"berth-agent-" + testName + "-linux-amd64",
		"berth-agent-" + testName + "-linux-amd64.tar.gz",
		"berth-agent-" + testName + "-windows-amd64.exe",
		"berth-agent-" + testName + "-windows-amd64.zip",
		"berth-control-" + testName + "-linux-amd64",
		"berth-control-" + testName + "-windows-amd64.exe",
		"berth-extension-" + testName + "-linux.zip",
		"berth-extension-" + testName + "-windows.zip",
		"berth-agent-" + testName + "-x64.msi",
		"berth-agent_" + testName + "_amd64.deb",
	}
	for _, w := range want {
		if _, ok := first[w]; !ok {
			t.Errorf("dist/ has no %s; it has %v", w, names)
		}
	}
	for _, n := range names {
		if b, ok := second[n]; !ok || !bytes.Equal(first[n], b) {
			t.Errorf("%s differs between two runs of make package", n)
		}
	}
	t.Logf("compared byte for byte: %v", names)
	if len(first) != len(second) {
		t.Errorf("the runs wrote %d and %d files", len(first), len(second))
	}

	ctx := context.Background()
	for _, exe := range []string{"berth-agent-" + testName + "-windows-amd64.exe", "berth-control-" + testName + "-windows-amd64.exe", "berth-agent-" + testName + "-x64.msi"} {
		if err := authenticode.Verify(ctx, filepath.Join(work, "dist1", exe), ca.CA); err != nil {
			t.Errorf("signed %s: %v", exe, err)
		}
	}
	checkInstallers(t, filepath.Join(work, "dist1"))
	// The agent reports the version its package is signed under, and the
	// build date is SOURCE_DATE_EPOCH's.
	ver, err := exec.Command(filepath.Join(work, "dist1", "berth-agent-"+testName+"-linux-amd64"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(ver), "berth-agent "+testName+" (commit abc1234, built 2024-12-04T08:13:20Z") {
		t.Errorf("berth-agent version: %v\n%s", err, ver)
	}
	checkExtensionZips(t, first)
	checkReleaseRepo(t, filepath.Join(work, "repo1"))
}

// checkInstallers reads back the versions the MSI and the .deb carry with
// the tools an installer uses: Windows Installer orders upgrades by the
// MSI's ProductVersion (commits after the tag in the fourth field), dpkg
// by the .deb's Version.
func checkInstallers(t *testing.T, dist string) {
	t.Helper()
	testenv.NeedBinary(t, "msiinfo")
	testenv.NeedBinary(t, "dpkg-deb")
	out, err := exec.Command("msiinfo", "export", filepath.Join(dist, "berth-agent-"+testName+"-x64.msi"), "Property").CombinedOutput()
	if err != nil || !regexp.MustCompile(`(?m)^ProductVersion\t1\.2\.3\.4\r?$`).Match(out) {
		t.Errorf("MSI Property table has no ProductVersion 1.2.3.4: %v\n%s", err, out)
	}
	out, err = exec.Command("dpkg-deb", "--field", filepath.Join(dist, "berth-agent_"+testName+"_amd64.deb"), "Package", "Version", "Architecture").CombinedOutput()
	if want := "Package: berth-agent\nVersion: " + testName + "\nArchitecture: amd64\n"; err != nil || string(out) != want {
		t.Errorf("dpkg-deb --field: %v\n%s\nwant\n%s", err, out, want)
	}
}

func checkExtensionZips(t *testing.T, files map[string][]byte) {
	t.Helper()
	for _, goos := range []string{"linux", "windows"} {
		b := files["berth-extension-"+testName+"-"+goos+".zip"]
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("extension zip %s: %v", goos, err)
		}
		if len(zr.File) == 0 || zr.File[0].Name != "HandlerManifest.json" {
			t.Errorf("extension zip %s: HandlerManifest.json is not at its root", goos)
		}
	}
}

// checkReleaseRepo publishes the repository to a folder and reads it with
// engine/release, as an agent does.
func checkReleaseRepo(t *testing.T, repo string) {
	t.Helper()
	ctx := context.Background()
	pub := filepath.Join(t.TempDir(), "pub")
	if err := tufrepo.Publish(ctx, repo, pub, azstore.Credential{Auth: "none"}); err != nil {
		t.Fatal(err)
	}
	c, err := release.Open(ctx, release.Options{URL: pub, RootFile: filepath.Join(repo, "metadata", "root.json"), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("the agent's TUF client refuses the release repository: %v", err)
	}
	for _, goos := range []string{"linux", "windows"} {
		tg, err := c.Find(release.Query{Kind: "agent", Version: testName, OS: goos, Arch: "amd64"})
		if err != nil {
			t.Errorf("agent package for %s: %v", goos, err)
			continue
		}
		dst := filepath.Join(t.TempDir(), filepath.Base(tg.Path))
		if err := c.Download(ctx, tg, dst, nil); err != nil {
			t.Errorf("download the %s agent package: %v", goos, err)
		}
	}
}

package extzip

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func repoManifest(t *testing.T, goos string) []byte {
	t.Helper()
	name := "../HandlerManifest.json"
	if goos == "windows" {
		name = "../HandlerManifest.windows.json"
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func build(t *testing.T, goos string, mtime time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := Build(&buf, Options{OS: goos, Manifest: repoManifest(t, goos), Binary: strings.NewReader("\x7fELF agent binary"), ModTime: mtime})
	if err != nil {
		t.Fatalf("Build %s: %v", goos, err)
	}
	return buf.Bytes()
}

func TestZipLayoutAndDeterminism(t *testing.T) {
	epoch := time.Unix(1733300000, 0) // 2024-12-04T08:13:20Z
	for _, tc := range []struct {
		goos string
		want []string
	}{
		{"linux", []string{"HandlerManifest.json -rw-r--r-- 2024-12-04T08:13:20Z", "bin/berth-agent -rwxr-xr-x 2024-12-04T08:13:20Z"}},
		{"windows", []string{"HandlerManifest.json -rw-r--r-- 2024-12-04T08:13:20Z", "bin/berth-agent.exe -rwxr-xr-x 2024-12-04T08:13:20Z"}},
	} {
		t.Run(tc.goos, func(t *testing.T) {
			a := build(t, tc.goos, epoch)
			got, err := Entries(a)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			if b := build(t, tc.goos, epoch); !bytes.Equal(a, b) {
				t.Error("two builds of the same input differ")
			}
			if c := build(t, tc.goos, epoch.Add(time.Hour)); bytes.Equal(a, c) {
				t.Error("the entries' time does not reach the zip")
			}
		})
	}
}

func TestZipTimeBeforeDOSEpoch(t *testing.T) {
	got, err := Entries(build(t, "linux", time.Unix(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got[0], "1980-01-01T00:00:00Z") {
		t.Errorf("entry %q; want the DOS epoch, the earliest a zip holds", got[0])
	}
}

func TestRepoManifests(t *testing.T) {
	for _, goos := range []string{"linux", "windows"} {
		if err := CheckManifest(repoManifest(t, goos), goos); err != nil {
			t.Errorf("%s: %v", goos, err)
		}
	}
	// Each OS's manifest names its own binary: the Linux one on Windows is wrong.
	if err := CheckManifest(repoManifest(t, "linux"), "windows"); err == nil {
		t.Error("the Linux manifest passed as the Windows one")
	}
}

func TestCheckManifestHostile(t *testing.T) {
	good := string(repoManifest(t, "linux"))
	for name, m := range map[string]string{
		"an object, not an array": strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(good), "["), "]"),
		"two elements":            "[" + strings.Trim(strings.TrimSpace(good), "[]") + "," + strings.Trim(strings.TrimSpace(good), "[]") + "]",
		"empty array":             "[]",
		"not JSON":                "installCommand=bin/berth-agent",
		"boolean as a string":     strings.Replace(good, `"reportHeartbeat": true`, `"reportHeartbeat": "true"`, 1),
		"unknown field":           strings.Replace(good, `"updateMode"`, `"updateModus": 1, "updateMode"`, 1),
		"unknown update mode":     strings.Replace(good, "UpdateWithInstall", "UpdateAlways", 1),
		"other binary":            strings.Replace(good, "bin/berth-agent extension enable", "scripts/run-in-background.sh enable", 1),
		"absolute path":           strings.Replace(good, `"bin/berth-agent extension install"`, `"/bin/berth-agent extension install"`, 1),
		"trailing data":           good + "{}",
		"missing heartbeat":       strings.Replace(good, `"reportHeartbeat": true,`, ``, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if err := CheckManifest([]byte(m), "linux"); err == nil {
				t.Errorf("accepted:\n%s", m)
			}
		})
	}
}

func FuzzCheckManifest(f *testing.F) {
	for _, goos := range []string{"linux", "windows"} {
		b, err := os.ReadFile(map[string]string{"linux": "../HandlerManifest.json", "windows": "../HandlerManifest.windows.json"}[goos])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, goos == "windows")
	}
	f.Add([]byte("[]"), false)
	f.Fuzz(func(t *testing.T, b []byte, windows bool) {
		goos := "linux"
		if windows {
			goos = "windows"
		}
		if CheckManifest(b, goos) != nil {
			return
		}
		// What it accepts builds a zip that holds it at the root.
		var buf bytes.Buffer
		if err := Build(&buf, Options{OS: goos, Manifest: b, Binary: strings.NewReader("x")}); err != nil {
			t.Fatalf("Build of an accepted manifest: %v", err)
		}
	})
}

func TestFileName(t *testing.T) {
	tests := []struct {
		version string
		want    string
		wantErr bool
	}{
		{"1.2.3", "berth-extension-1.2.3-linux.zip", false},
		{"v0.3.0-14-g66bfe19-dirty", "berth-extension-v0.3.0-14-g66bfe19-dirty-linux.zip", false},
		{"66bfe19", "berth-extension-66bfe19-linux.zip", false},
		{"../../etc/x", "", true},
		{"1 2", "", true},
		{"", "", true},
		{"..", "", true},
	}
	for _, tc := range tests {
		got, err := FileName(tc.version, "linux")
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("FileName(%q) = %q, %v; want %q, error %v", tc.version, got, err, tc.want, tc.wantErr)
		}
	}
}

package selfupdate

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/berthhq/berth/engine/archive"
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// entry is one member of a test package.
type entry struct {
	name, body, link string
}

func tgz(t *testing.T, path string, entries ...entry) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o755, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		if e.link != "" {
			h = &tar.Header{Name: e.name, Mode: 0o777, Linkname: e.link, Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// signedStager signs each version's package into a repository published to
// a folder, and returns a Stager that trusts it.
func signedStager(t *testing.T, pkgs map[string][]entry) (*Stager, *recorder) {
	t.Helper()
	work := t.TempDir()
	repo, pub := filepath.Join(work, "repo"), filepath.Join(work, "pub")
	if err := tufrepo.Init(repo); err != nil {
		t.Fatal(err)
	}
	for v, entries := range pkgs {
		file := filepath.Join(work, "berth-agent-"+v+"-linux-amd64.tar.gz")
		tgz(t, file, entries...)
		if _, err := tufrepo.Add(repo, tufrepo.Package{Kind: "agent", Version: v, OS: "linux", Arch: "amd64"}, file); err != nil {
			t.Fatal(err)
		}
	}
	if err := tufrepo.Publish(context.Background(), repo, pub, azstore.Credential{}); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(work, "state")
	rel, err := release.Open(context.Background(), release.Options{URL: pub, RootFile: filepath.Join(repo, "metadata", "root.json"), StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	db, err := statedb.Open(filepath.Join(stateDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	ev := &recorder{}
	return &Stager{DB: db, Releases: rel, StateDir: stateDir, Launcher: "1.0", Events: ev}, ev
}

// Only a signed package with the binary at its root is staged; anything
// else leaves no folder behind and nothing selectable.
func TestStageHostilePackages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linux packages")
	}
	s, _ := signedStager(t, map[string][]entry{
		"2.0": {{name: "berth-agent", body: "#!/bin/sh\n"}, {name: "LICENSE", body: "x"}},
		"3.0": {{name: "berth-agent", body: "x"}, {name: "../escape", body: "x"}},
		"4.0": {{name: "bin/berth-agent", body: "x"}},
		"5.0": {{name: "real", body: "x"}, {name: "berth-agent", link: "real"}},
		"6.0": {{name: "berth-agent", link: "/bin/sh"}},
	})
	ctx := context.Background()
	for _, tc := range []struct {
		version string
		want    string // "" for staged
		is      error
	}{
		{version: "2.0"},
		{version: "3.0", want: "escape", is: archive.ErrUnsafeEntry},
		{version: "4.0", want: "no berth-agent at the package's root"},
		{version: "5.0", want: "not a file"},
		{version: "6.0", want: "/bin/sh", is: archive.ErrUnsafeEntry},
		{version: "7.0", want: "no matching release package", is: release.ErrNotFound},
		{version: "../../etc", want: "a version is letters"},
	} {
		t.Run(tc.version, func(t *testing.T) {
			tgt, err := s.Find(ctx, tc.version, "")
			if err == nil {
				_, err = s.Stage(ctx, tgt)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Select(ctx, tc.version, false); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %v; want one saying %q (is %v)", err, tc.want, tc.is)
			}
			if _, serr := os.Lstat(filepath.Join(s.StateDir, AgentsDir, tc.version)); serr == nil && !strings.Contains(tc.version, "..") {
				t.Errorf("a refused package left %s behind", tc.version)
			}
			if err := s.Select(ctx, tc.version, false); err == nil {
				t.Errorf("a refused version could be selected")
			}
		})
	}
}

// The daemon refuses a desired version that is not signed for this host:
// one event, nothing selected; a signed one is staged and selected.
func TestUpdaterStep(t *testing.T) {
	s, ev := signedStager(t, map[string][]entry{"2.0": {{name: "berth-agent", body: "x"}}})
	ctx := context.Background()
	want := "9.9"
	u := NewUpdater(Updater{Stager: s, Running: "1.0", Desired: func() (string, bool) { return want, true }})
	for range 2 {
		if err := u.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := Load(ctx, s.DB)
	if st.Selected != "" || strings.Count(strings.Join(ev.events, "\n"), "agent.update.refused") != 1 {
		t.Fatalf("unsigned desired version: selected %q, events %v; want nothing selected and one refusal", st.Selected, ev.events)
	}
	want = "2.0"
	if err := u.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ = Load(ctx, s.DB); st.Selected != "2.0" || !ev.has("agent.update.staged") {
		t.Fatalf("signed desired version: selected %q, events %v", st.Selected, ev.events)
	}
	// A staged binary changed on disk is never started: pick forgets it.
	if err := os.WriteFile(st.Staged["2.0"].Binary, []byte("tampered"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := NewLauncher(LauncherOptions{DB: s.DB, StateDir: s.StateDir, Self: "/self", Version: "1.0", Events: ev})
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.pick(ctx)
	if err != nil || c.version != "1.0" || !ev.has("agent.damaged") {
		t.Fatalf("pick with a tampered binary = %+v, %v; events %v", c, err, ev.events)
	}
}

// Old versions do not pile up: beyond keepStaged spare ones, the oldest go,
// never the selected or good one.
func TestStagePrunes(t *testing.T) {
	pkgs := map[string][]entry{}
	for _, v := range []string{"2.0", "3.0", "4.0", "5.0", "6.0", "7.0"} {
		pkgs[v] = []entry{{name: "berth-agent", body: "agent " + v}}
	}
	s, _ := signedStager(t, pkgs)
	ctx := context.Background()
	for _, v := range []string{"2.0", "3.0", "4.0", "5.0", "6.0", "7.0"} {
		tgt, err := s.Find(ctx, v, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stage(ctx, tgt); err != nil {
			t.Fatal(err)
		}
		if v == "2.0" {
			if err := s.Select(ctx, v, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, _ := Load(ctx, s.DB)
	var kept []string
	for _, v := range []string{"2.0", "3.0", "4.0", "5.0", "6.0", "7.0"} {
		_, err := os.Stat(filepath.Join(s.StateDir, AgentsDir, v))
		if _, rec := st.Staged[v]; rec != (err == nil) {
			t.Errorf("%s: recorded %v, on disk %v", v, rec, err == nil)
		}
		if err == nil {
			kept = append(kept, v)
		}
	}
	if strings.Join(kept, " ") != "2.0 4.0 5.0 6.0 7.0" {
		t.Errorf("kept %v; want the selected 2.0, the fresh 7.0 and the 3 newest others", kept)
	}
}

//go:build linux

package engine_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/engine/archive"
	"github.com/berthhq/berth/engine/docker"
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/packaging/tufrepo"
)

type entry struct {
	name, link string
	typ        byte
	body       string
	size       int64 // header size when it should lie about the body
}

// tgz builds a package with the given entries.
func tgz(t *testing.T, dir, name string, entries []entry) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(e.body))
		if e.size > 0 {
			size = e.size
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: 0o755, Size: size}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg && e.size == 0 {
			tw.Write([]byte(e.body))
		}
	}
	// A lying size leaves the tar stream short; write what we have.
	tw.Flush()
	gz.Close()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var goodDaemon = entry{name: "docker/dockerd", body: "#!/bin/sh\nexit 0\n"}

// hostile packages are validly signed: the signature says who made them,
// not that unpacking them is safe.
func TestInstallRefusesHostileInput(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		// tamper changes the published repository after publishing.
		tamper  func(t *testing.T, pub, target string)
		now     time.Time
		wantErr error
		wantMsg string
	}{
		{name: "path traversal", entries: []entry{goodDaemon, {name: "docker/../../evil", body: "x"}}, wantErr: archive.ErrUnsafeEntry, wantMsg: "evil"},
		{name: "absolute path", entries: []entry{goodDaemon, {name: "/etc/evil", body: "x"}}, wantErr: archive.ErrUnsafeEntry, wantMsg: "/etc/evil"},
		{name: "symlink escape", entries: []entry{goodDaemon, {name: "docker/etc", typ: tar.TypeSymlink, link: "/etc"}, {name: "docker/etc/evil", body: "x"}}, wantErr: archive.ErrUnsafeEntry, wantMsg: "docker/etc"},
		{name: "oversized entry", entries: []entry{goodDaemon, {name: "docker/huge", size: 8 << 30}}, wantErr: archive.ErrTooLarge, wantMsg: "docker/huge"},
		{name: "not the engine's layout", entries: []entry{{name: "dockerd", body: "x"}}, wantMsg: "layout"},
		{name: "truncated download", entries: []entry{goodDaemon}, tamper: func(t *testing.T, pub, target string) {
			b, _ := os.ReadFile(target)
			os.WriteFile(target, b[:len(b)/2], 0o644)
		}, wantErr: release.ErrLengthMismatch},
		{name: "hash mismatch", entries: []entry{goodDaemon}, tamper: func(t *testing.T, pub, target string) {
			b, _ := os.ReadFile(target)
			b[len(b)/2] ^= 0xff
			os.WriteFile(target, b, 0o644)
		}, wantErr: release.ErrHashMismatch},
		{name: "expired metadata", entries: []entry{goodDaemon}, now: time.Now().Add(3 * 24 * time.Hour), wantErr: release.ErrExpired},
		{name: "unknown signing key", entries: []entry{goodDaemon}, tamper: func(t *testing.T, pub, target string) {
			// Another repository, with its own keys, published over this one.
			other := filepath.Join(t.TempDir(), "other")
			if err := tufrepo.Init(other); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"timestamp.json", "root.json"} {
				b, err := os.ReadFile(filepath.Join(other, "metadata", f))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(pub, "metadata", f), b, 0o644)
			}
		}, wantErr: release.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			work := t.TempDir()
			repo := filepath.Join(work, "repo")
			pub := filepath.Join(work, "pub")
			if err := tufrepo.Init(repo); err != nil {
				t.Fatal(err)
			}
			pkg := tgz(t, work, "docker-1.0.0.tgz", tc.entries)
			tgt, err := tufrepo.Add(repo, tufrepo.Package{Kind: "engine", Flavor: "docker", Version: "1.0.0", OS: "linux", Arch: "amd64"}, pkg)
			if err != nil {
				t.Fatal(err)
			}
			if err := tufrepo.Publish(ctx, repo, pub, azstore.Credential{Auth: "none"}); err != nil {
				t.Fatal(err)
			}
			if tc.tamper != nil {
				tc.tamper(t, pub, filepath.Join(pub, filepath.FromSlash(tufrepo.RemotePath(tgt.Path, tgt.SHA256))))
			}
			state := filepath.Join(work, "state")
			opts := release.Options{URL: pub, Credential: azstore.Credential{Auth: "none"}, RootFile: filepath.Join(repo, "metadata", "root.json"), StateDir: state}
			if !tc.now.IsZero() {
				opts.Now = func() time.Time { return tc.now }
			}
			rel, err := release.Open(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			db, _ := statedb.Open(filepath.Join(state, "agent.db"))
			flavorDir := filepath.Join(state, "engines", "docker")
			m, err := engine.New(engine.Options{
				Flavor: &docker.Flavor{}, Runner: &engine.Supervised{Dir: flavorDir, Exe: "dockerd"},
				Releases: rel, StateDir: state, DB: db, Managed: true,
				Config: engine.ConfigInput{Endpoint: "unix://" + filepath.Join(work, "d.sock")},
			})
			if err != nil {
				t.Fatal(err)
			}
			err = m.Install(ctx, "1.0.0")
			if err == nil {
				t.Fatal("install succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q is not %v", err, tc.wantErr)
			}
			if tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not name %q", err, tc.wantMsg)
			}
			// Nothing half-installed: no version folder, no unpacking
			// leftovers, no partial download, no engine state.
			entries, _ := os.ReadDir(flavorDir)
			for _, e := range entries {
				switch e.Name() {
				case ".lock":
				case "downloads":
					left, _ := os.ReadDir(filepath.Join(flavorDir, "downloads"))
					for _, l := range left {
						if !strings.HasSuffix(l.Name(), ".partial") || tc.wantErr == release.ErrHashMismatch {
							t.Errorf("download left behind: %s", l.Name())
						}
					}
				default:
					t.Errorf("left in the engines folder: %s", e.Name())
				}
			}
			if vs, _ := m.Installed(); len(vs) != 0 {
				t.Errorf("installed = %v, want none", vs)
			}
			st, err := m.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Active != "" || st.Journal != nil {
				t.Errorf("state changed: active=%q journal=%+v", st.Active, st.Journal)
			}
		})
	}
}

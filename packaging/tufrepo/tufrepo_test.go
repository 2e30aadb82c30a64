package tufrepo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/testenv/azurite"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func fixed(t time.Time) Option { return WithClock(func() time.Time { return t }) }

func pkgFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

type versions struct{ Root, Targets, Snapshot, Timestamp int64 }

func readVersions(t *testing.T, dir string) versions {
	t.Helper()
	md := metaDir(dir)
	root, err := metadata.Root().FromFile(filepath.Join(md, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := metadata.Targets().FromFile(filepath.Join(md, "targets.json"))
	if err != nil {
		t.Fatal(err)
	}
	sn, err := metadata.Snapshot().FromFile(filepath.Join(md, "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := metadata.Timestamp().FromFile(filepath.Join(md, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	return versions{root.Signed.Version, tg.Signed.Version, sn.Signed.Version, ts.Signed.Version}
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if err := Init(dir, fixed(t0)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keysDir(dir))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("keys dir: %v %v", fi.Mode(), err)
	}
	for _, role := range roles {
		fi, err := os.Stat(filepath.Join(keysDir(dir), role+".key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s key: %v %v", role, fi, err)
		}
	}
	a, _ := os.ReadFile(filepath.Join(metaDir(dir), "root.json"))
	b, _ := os.ReadFile(filepath.Join(metaDir(dir), "1.root.json"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("root.json and 1.root.json differ or are empty")
	}
	root, err := metadata.Root().FromBytes(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(RoleRoot, root); err != nil {
		t.Errorf("root not self-signed: %v", err)
	}
	if !root.Signed.ConsistentSnapshot {
		t.Error("consistent snapshots are off")
	}
	if diff := cmp.Diff(versions{1, 1, 1, 1}, readVersions(t, dir)); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	if got, want := root.Signed.Expires, t0.Add(DefaultRootExpiry); !got.Equal(want) {
		t.Errorf("root expires %v, want %v", got, want)
	}
	ts, _ := metadata.Timestamp().FromFile(filepath.Join(metaDir(dir), "timestamp.json"))
	if got, want := ts.Signed.Expires, t0.Add(DefaultTimestampExpiry); !got.Equal(want) {
		t.Errorf("timestamp expires %v, want %v", got, want)
	}
	for _, f := range []string{"1.targets.json", "1.snapshot.json", "targets.json", "snapshot.json"} {
		if _, err := os.Stat(filepath.Join(metaDir(dir), f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	if err := Init(dir); err == nil || !strings.Contains(err.Error(), "already there") {
		t.Errorf("second Init = %v", err)
	}
}

func TestAdd(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, fixed(t0)); err != nil {
		t.Fatal(err)
	}
	docker := Package{Kind: KindEngine, Flavor: FlavorDocker, Version: "27.3.1", OS: "linux", Arch: "amd64"}
	steps := []struct {
		name    string
		pkg     Package
		file    string
		content string
		wantErr error
		errText string
		want    versions
	}{
		{"docker", docker, "docker-27.3.1.tgz", "docker bits", nil, "", versions{1, 2, 2, 2}},
		{"same again is a no-op", docker, "docker-27.3.1.tgz", "docker bits", nil, "", versions{1, 2, 2, 2}},
		{"other content for the same file", docker, "docker-27.3.1.tgz", "evil bits", ErrConflict, "already signed with other content", versions{1, 2, 2, 2}},
		{"other file for the same release", docker, "docker-27.3.1-b.tgz", "docker bits", ErrConflict, "already signed as engine/docker/linux-amd64/27.3.1/docker-27.3.1.tgz", versions{1, 2, 2, 2}},
		{"promote to beta", Package{Kind: KindEngine, Flavor: FlavorDocker, Version: "27.3.1", OS: "linux", Arch: "amd64", Channel: "beta"}, "docker-27.3.1.tgz", "docker bits", nil, "", versions{1, 3, 3, 3}},
		{"containerd windows", Package{Kind: KindEngine, Flavor: FlavorContainerd, Version: "v2.0.0", OS: "windows", Arch: "amd64"}, "containerd-2.0.0-windows-amd64.zip", "ctr bits", nil, "", versions{1, 4, 4, 4}},
		{"agent", Package{Kind: KindAgent, Version: "1.0.0", OS: "windows", Arch: "amd64"}, "berth-agent.exe", "agent bits", nil, "", versions{1, 5, 5, 5}},
		{"bad kind", Package{Kind: "kernel", Version: "1", OS: "linux", Arch: "amd64"}, "x", "x", nil, `--kind "kernel": want engine or agent`, versions{1, 5, 5, 5}},
		{"engine without flavor", Package{Kind: KindEngine, Version: "1", OS: "linux", Arch: "amd64"}, "x", "x", nil, "needs docker or containerd", versions{1, 5, 5, 5}},
		{"agent with flavor", Package{Kind: KindAgent, Flavor: "docker", Version: "1", OS: "linux", Arch: "amd64"}, "x", "x", nil, "an agent package has no flavor", versions{1, 5, 5, 5}},
		{"bad os", Package{Kind: KindAgent, Version: "1", OS: "darwin", Arch: "amd64"}, "x", "x", nil, `--os "darwin": want linux or windows`, versions{1, 5, 5, 5}},
		{"bad arch", Package{Kind: KindAgent, Version: "1", OS: "linux", Arch: "386"}, "x", "x", nil, `--arch "386"`, versions{1, 5, 5, 5}},
		{"version with slash", Package{Kind: KindAgent, Version: "1/../../x", OS: "linux", Arch: "amd64"}, "x", "x", nil, "letters, digits and . _ + - only", versions{1, 5, 5, 5}},
		{"no version", Package{Kind: KindAgent, OS: "linux", Arch: "amd64"}, "x", "x", nil, "--version is required", versions{1, 5, 5, 5}},
		{"file name with space", Package{Kind: KindAgent, Version: "2", OS: "linux", Arch: "amd64"}, "my agent", "x", nil, "rename it", versions{1, 5, 5, 5}},
	}
	for _, st := range steps {
		_, err := Add(dir, st.pkg, pkgFile(t, st.file, st.content), fixed(t0))
		switch {
		case st.wantErr != nil && !errors.Is(err, st.wantErr):
			t.Errorf("%s: Add = %v, want %v", st.name, err, st.wantErr)
		case st.errText != "" && (err == nil || !strings.Contains(err.Error(), st.errText)):
			t.Errorf("%s: Add = %v, want it to contain %q", st.name, err, st.errText)
		case st.wantErr == nil && st.errText == "" && err != nil:
			t.Errorf("%s: Add: %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, readVersions(t, dir)); diff != "" {
			t.Errorf("%s: versions (-want +got):\n%s", st.name, diff)
		}
	}
	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{Path: "agent/windows-amd64/1.0.0/berth-agent.exe", Length: 10, SHA256: sum("agent bits"),
			Package: Package{Kind: KindAgent, Version: "1.0.0", OS: "windows", Arch: "amd64", Channel: "stable"}},
		{Path: "engine/containerd/windows-amd64/v2.0.0/containerd-2.0.0-windows-amd64.zip", Length: 8, SHA256: sum("ctr bits"),
			Package: Package{Kind: KindEngine, Flavor: FlavorContainerd, Version: "v2.0.0", OS: "windows", Arch: "amd64", Channel: "stable"}},
		{Path: "engine/docker/linux-amd64/27.3.1/docker-27.3.1.tgz", Length: 11, SHA256: sum("docker bits"),
			Package: Package{Kind: KindEngine, Flavor: FlavorDocker, Version: "27.3.1", OS: "linux", Arch: "amd64", Channel: "beta"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	// The repository keeps a copy of each package, and every version of
	// the metadata.
	b, err := os.ReadFile(filepath.Join(targetsDir(dir), "engine", "docker", "linux-amd64", "27.3.1", "docker-27.3.1.tgz"))
	if err != nil || string(b) != "docker bits" {
		t.Errorf("package copy: %q %v", b, err)
	}
	names, _ := versionedMetadata(metaDir(dir))
	wantNames := []string{"1.root.json", "1.targets.json", "2.targets.json", "3.targets.json", "4.targets.json", "5.targets.json",
		"1.snapshot.json", "2.snapshot.json", "3.snapshot.json", "4.snapshot.json", "5.snapshot.json"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("versioned metadata (-want +got):\n%s", diff)
	}
	// Snapshot and timestamp pin the exact bytes of what they name.
	sn, _ := metadata.Snapshot().FromFile(filepath.Join(metaDir(dir), "snapshot.json"))
	tb, _ := os.ReadFile(filepath.Join(metaDir(dir), "5.targets.json"))
	if err := sn.Signed.Meta["targets.json"].VerifyLengthHashes(tb); err != nil {
		t.Errorf("snapshot does not pin targets: %v", err)
	}
	if _, err := Add(t.TempDir(), docker, pkgFile(t, "d.tgz", "x")); !errors.Is(err, ErrNotRepository) {
		t.Errorf("Add outside a repository = %v", err)
	}
}

func TestRenew(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, fixed(t0)); err != nil {
		t.Fatal(err)
	}
	for _, st := range []struct {
		at   time.Duration
		want []string
		v    versions
	}{
		{time.Hour, nil, versions{1, 1, 1, 1}},
		{13 * time.Hour, []string{RoleTimestamp}, versions{1, 1, 1, 2}},
		{14 * time.Hour, nil, versions{1, 1, 1, 2}},
		{4 * 24 * time.Hour, []string{RoleSnapshot, RoleTimestamp}, versions{1, 1, 2, 3}},
		{46 * 24 * time.Hour, []string{RoleTargets, RoleSnapshot, RoleTimestamp}, versions{1, 2, 3, 4}},
		{200 * 24 * time.Hour, []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}, versions{2, 3, 4, 5}},
	} {
		got, err := Renew(dir, fixed(t0.Add(st.at)))
		if err != nil {
			t.Fatalf("at +%v: %v", st.at, err)
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("at +%v renewed (-want +got):\n%s", st.at, diff)
		}
		if diff := cmp.Diff(st.v, readVersions(t, dir)); diff != "" {
			t.Errorf("at +%v versions (-want +got):\n%s", st.at, diff)
		}
	}
	// Root 2 is signed by the root key root 1 names, so agents can walk to it.
	r1, _ := metadata.Root().FromFile(filepath.Join(metaDir(dir), "1.root.json"))
	r2, _ := metadata.Root().FromFile(filepath.Join(metaDir(dir), "2.root.json"))
	if err := r1.VerifyDelegate(RoleRoot, r2); err != nil {
		t.Errorf("2.root.json not signed by root 1's key: %v", err)
	}
}

func TestRemotePath(t *testing.T) {
	if got := RemotePath("engine/docker/linux-amd64/27.3.1/docker.tgz", "abc"); got != "targets/engine/docker/linux-amd64/27.3.1/abc.docker.tgz" {
		t.Errorf("RemotePath = %q", got)
	}
	if got := RemotePath("top.bin", "abc"); got != "targets/abc.top.bin" {
		t.Errorf("RemotePath = %q", got)
	}
}

// newRepo makes a repository with one docker package, signed now.
func newRepo(t *testing.T) (string, Target) {
	t.Helper()
	dir := t.TempDir()
	if err := Init(dir); err != nil {
		t.Fatal(err)
	}
	tg, err := Add(dir, Package{Kind: KindEngine, Flavor: FlavorDocker, Version: "27.3.1", OS: "linux", Arch: "amd64"}, pkgFile(t, "docker.tgz", "docker bits"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, tg
}

// destination is a publish target with a way to read and tamper with it.
type destination struct {
	to   string
	cred azstore.Credential
	read func(t *testing.T, name string) ([]byte, error)
	put  func(t *testing.T, name string, data []byte)
}

func folderDestination(t *testing.T) destination {
	dir := filepath.Join(t.TempDir(), "published")
	return destination{
		to: dir,
		read: func(t *testing.T, name string) ([]byte, error) {
			return os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		},
		put: func(t *testing.T, name string, data []byte) {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func azuriteDestination(t *testing.T, az *azurite.Server, container string) destination {
	cred := azstore.Credential{Auth: azstore.AuthSharedKey, KeyFile: az.KeyFile(t)}
	c, err := azstore.New(az.ContainerURL(container), cred, azstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return destination{
		to:   az.ContainerURL(container),
		cred: cred,
		read: func(t *testing.T, name string) ([]byte, error) {
			rc, _, err := c.Open(context.Background(), name, 0)
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			var b bytes.Buffer
			_, err = b.ReadFrom(rc)
			return b.Bytes(), err
		},
		put: func(t *testing.T, name string, data []byte) {
			p := filepath.Join(t.TempDir(), "blob")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := c.UploadFile(context.Background(), name, p, azstore.UploadOptions{Overwrite: true}); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestPublish(t *testing.T) {
	ctx := context.Background()
	backends := []struct {
		name  string
		setup func(t *testing.T) func(t *testing.T, n int) destination
	}{
		{"folder", func(t *testing.T) func(t *testing.T, n int) destination {
			return func(t *testing.T, _ int) destination { return folderDestination(t) }
		}},
		{"azurite", func(t *testing.T) func(t *testing.T, n int) destination {
			az := azurite.Start(t)
			return func(t *testing.T, n int) destination {
				return azuriteDestination(t, az, "publish"+string(rune('a'+n)))
			}
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dest := b.setup(t)
			cases := []struct {
				name string
				run  func(t *testing.T, d destination)
			}{
				{"layout and idempotence", func(t *testing.T, d destination) {
					dir, tg := newRepo(t)
					for i := 0; i < 2; i++ {
						if err := Publish(ctx, dir, d.to, d.cred); err != nil {
							t.Fatalf("Publish #%d: %v", i+1, err)
						}
					}
					for _, name := range []string{"metadata/1.root.json", "metadata/root.json", "metadata/timestamp.json",
						"metadata/2.targets.json", "metadata/2.snapshot.json", "metadata/1.targets.json"} {
						got, err := d.read(t, name)
						want, _ := os.ReadFile(filepath.Join(metaDir(dir), filepath.Base(name)))
						if err != nil || !bytes.Equal(got, want) {
							t.Errorf("%s: %v (same bytes: %v)", name, err, bytes.Equal(got, want))
						}
					}
					got, err := d.read(t, RemotePath(tg.Path, tg.SHA256))
					if err != nil || string(got) != "docker bits" {
						t.Errorf("package: %q %v", got, err)
					}
				}},
				{"refuses to overwrite a different package", func(t *testing.T, d destination) {
					dir, tg := newRepo(t)
					if err := Publish(ctx, dir, d.to, d.cred); err != nil {
						t.Fatal(err)
					}
					d.put(t, RemotePath(tg.Path, tg.SHA256), []byte("docker bitz"))
					err := Publish(ctx, dir, d.to, d.cred)
					if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "refusing to overwrite a published package") {
						t.Fatalf("Publish over a changed package = %v", err)
					}
					if got, _ := d.read(t, RemotePath(tg.Path, tg.SHA256)); string(got) != "docker bitz" {
						t.Errorf("the conflicting blob was overwritten: %q", got)
					}
				}},
				{"refuses another repository's metadata", func(t *testing.T, d destination) {
					dir, _ := newRepo(t)
					if err := Publish(ctx, dir, d.to, d.cred); err != nil {
						t.Fatal(err)
					}
					other, _ := newRepo(t)
					err := Publish(ctx, other, d.to, d.cred)
					if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "another repository") {
						t.Fatalf("Publish of another repository = %v", err)
					}
				}},
				{"renews expired metadata", func(t *testing.T, d destination) {
					dir := t.TempDir()
					if err := Init(dir, WithClock(func() time.Time { return time.Now().Add(-48 * time.Hour) })); err != nil {
						t.Fatal(err)
					}
					if err := Publish(ctx, dir, d.to, d.cred); err != nil {
						t.Fatal(err)
					}
					b, err := d.read(t, "metadata/timestamp.json")
					if err != nil {
						t.Fatal(err)
					}
					ts, err := metadata.Timestamp().FromBytes(b)
					if err != nil {
						t.Fatal(err)
					}
					if ts.Signed.IsExpired(time.Now()) || ts.Signed.Version != 2 {
						t.Errorf("published timestamp v%d expires %v", ts.Signed.Version, ts.Signed.Expires)
					}
				}},
			}
			for i, tc := range cases {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, dest(t, i)) })
			}
		})
	}
}

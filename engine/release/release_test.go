package release

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	mathrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/testenv/azurite"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// content returns n deterministic pseudo-random bytes.
func content(seed uint64, n int) []byte {
	r := mathrand.New(mathrand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// world is a release repository, a place it is published to, and an
// agent state folder.
type world struct {
	t     *testing.T
	repo  string
	to    string
	cred  azstore.Credential // the publisher's
	agent azstore.Credential // the agent's
	url   string             // what the agent reads
	http  *http.Client
	state string
	dest  string
	read  func(name string) []byte
	put   func(name string, data []byte)
}

// backend prepares a fresh, empty publish destination for each world.
type backend struct {
	name  string
	setup func(t *testing.T) func(t *testing.T, w *world)
}

var (
	folderBackend = backend{"folder", func(t *testing.T) func(t *testing.T, w *world) {
		return func(t *testing.T, w *world) {
			dir := filepath.Join(t.TempDir(), "published")
			w.to, w.url = dir, "file://"+filepath.ToSlash(dir)
			w.read = func(name string) []byte {
				b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			w.put = func(name string, data []byte) {
				if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}}
	httpsBackend = backend{"https", func(t *testing.T) func(t *testing.T, w *world) {
		return func(t *testing.T, w *world) {
			folderBackend.setup(t)(t, w)
			if err := os.MkdirAll(w.to, 0o755); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewTLSServer(http.FileServer(http.Dir(w.to)))
			t.Cleanup(srv.Close)
			w.url, w.http = srv.URL+"/", srv.Client()
			// managed-identity is agent.yaml's default; a plain https
			// server is read without it.
			w.agent = azstore.Credential{Auth: azstore.AuthManagedIdentity}
		}
	}}
)

func azuriteBackend(name, agentAuth string) backend {
	return backend{name, func(t *testing.T) func(t *testing.T, w *world) {
		az := azurite.Start(t)
		n := 0
		return func(t *testing.T, w *world) {
			n++
			container := "rel" + strconv.Itoa(n)
			admin := azstore.Credential{Auth: azstore.AuthSharedKey, KeyFile: az.KeyFile(t)}
			c, err := azstore.New(az.ContainerURL(container), admin, azstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.EnsureContainer(context.Background()); err != nil {
				t.Fatal(err)
			}
			w.to, w.url = az.ContainerURL(container), az.ContainerURL(container)
			switch agentAuth {
			case azstore.AuthSharedKey:
				w.cred, w.agent = admin, admin
			case azstore.AuthSAS:
				w.cred = azstore.Credential{Auth: azstore.AuthSAS, SASFile: az.SASFile(t, container, "racwdl")}
				w.agent = azstore.Credential{Auth: azstore.AuthSAS, SASFile: az.SASFile(t, container, "rl")}
			}
			w.read = func(name string) []byte {
				rc, _, err := c.Open(context.Background(), name, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				var b bytes.Buffer
				if _, err := b.ReadFrom(rc); err != nil {
					t.Fatal(err)
				}
				return b.Bytes()
			}
			w.put = func(name string, data []byte) {
				p := filepath.Join(t.TempDir(), "blob")
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := c.UploadFile(context.Background(), name, p, azstore.UploadOptions{Overwrite: true}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}}
}

func newWorld(t *testing.T, place func(t *testing.T, w *world), opts ...tufrepo.Option) *world {
	t.Helper()
	w := &world{t: t, repo: t.TempDir(), state: t.TempDir()}
	w.dest = filepath.Join(t.TempDir(), "pkg", "docker.tgz")
	place(t, w)
	if err := tufrepo.Init(w.repo, opts...); err != nil {
		t.Fatal(err)
	}
	return w
}

var docker = tufrepo.Package{Kind: tufrepo.KindEngine, Flavor: tufrepo.FlavorDocker, OS: "linux", Arch: "amd64"}

func (w *world) add(p tufrepo.Package, version string, data []byte, opts ...tufrepo.Option) tufrepo.Target {
	w.t.Helper()
	p.Version = version
	f := filepath.Join(w.t.TempDir(), p.Kind+"-"+version+".tgz")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		w.t.Fatal(err)
	}
	tg, err := tufrepo.Add(w.repo, p, f, opts...)
	if err != nil {
		w.t.Fatal(err)
	}
	return tg
}

func (w *world) publish(opts ...tufrepo.Option) {
	w.t.Helper()
	if err := tufrepo.Publish(context.Background(), w.repo, w.to, w.cred, opts...); err != nil {
		w.t.Fatalf("publish: %v", err)
	}
}

func (w *world) open(mods ...func(*Options)) *Client {
	w.t.Helper()
	o := Options{
		URL:        w.url,
		Credential: w.agent,
		RootFile:   filepath.Join(w.repo, "metadata", "root.json"),
		StateDir:   w.state,
		HTTPClient: w.http,
	}
	for _, m := range mods {
		m(&o)
	}
	c, err := Open(context.Background(), o)
	if err != nil {
		w.t.Fatalf("Open: %v", err)
	}
	return c
}

func (w *world) refresh(c *Client) {
	w.t.Helper()
	if err := c.Refresh(context.Background()); err != nil {
		w.t.Fatalf("Refresh: %v", err)
	}
}

func (w *world) find(c *Client, q Query) Target {
	w.t.Helper()
	tg, err := c.Find(q)
	if err != nil {
		w.t.Fatalf("Find: %v", err)
	}
	return tg
}

func TestEndToEnd(t *testing.T) {
	for _, b := range []backend{
		azuriteBackend("azurite shared-key", azstore.AuthSharedKey),
		azuriteBackend("azurite sas", azstore.AuthSAS),
		folderBackend,
		httpsBackend,
	} {
		t.Run(b.name, func(t *testing.T) {
			w := newWorld(t, b.setup(t))
			big := content(1, 3<<20+17)
			w.add(docker, "27.3.1", []byte("docker 27.3.1"))
			newest := w.add(docker, "27.10.0", big)
			w.add(tufrepo.Package{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64", Channel: "beta"}, "28.0.0-rc.1", []byte("rc"))
			w.add(tufrepo.Package{Kind: "engine", Flavor: "containerd", OS: "windows", Arch: "amd64"}, "2.0.0", []byte("containerd"))
			w.add(tufrepo.Package{Kind: "agent", OS: "linux", Arch: "amd64"}, "1.2.0", []byte("agent"))
			w.publish()

			c := w.open()
			if _, err := c.Find(Query{Kind: "engine", Flavor: "docker"}); err == nil || !strings.Contains(err.Error(), "call Refresh first") {
				t.Fatalf("Find before Refresh = %v", err)
			}
			w.refresh(c)
			for _, tt := range []struct {
				q           Query
				wantVersion string
				wantErr     error
			}{
				{Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64"}, "27.10.0", nil},
				{Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64", Version: "27.3.1"}, "27.3.1", nil},
				{Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64", Channel: "beta"}, "28.0.0-rc.1", nil},
				{Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64", Version: "28.0.0-rc.1"}, "28.0.0-rc.1", nil},
				{Query{Kind: "engine", Flavor: "containerd", OS: "windows", Arch: "amd64"}, "2.0.0", nil},
				{Query{Kind: "agent", OS: "linux", Arch: "amd64"}, "1.2.0", nil},
				{Query{Kind: "engine", Flavor: "containerd", OS: "linux", Arch: "amd64"}, "", ErrNotFound},
				{Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64", Version: "9.9.9"}, "", ErrNotFound},
				{Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64", Channel: "edge"}, "", ErrNotFound},
			} {
				got, err := c.Find(tt.q)
				if !errors.Is(err, tt.wantErr) || got.Version != tt.wantVersion {
					t.Errorf("Find(%+v) = %q, %v; want %q, %v", tt.q, got.Version, err, tt.wantVersion, tt.wantErr)
				}
			}
			tg := w.find(c, Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64"})
			want := Target{
				Path: newest.Path, Version: "27.10.0", Length: int64(len(big)), SHA256: newest.SHA256,
				Custom: map[string]string{"kind": "engine", "flavor": "docker", "version": "27.10.0", "os": "linux", "arch": "amd64", "channel": "stable"},
			}
			if diff := cmp.Diff(want, tg); diff != "" {
				t.Errorf("Find (-want +got):\n%s", diff)
			}
			var last [2]int64
			if err := c.Download(context.Background(), tg, w.dest, func(done, total int64) { last = [2]int64{done, total} }); err != nil {
				t.Fatalf("Download: %v", err)
			}
			got, _ := os.ReadFile(w.dest)
			if !bytes.Equal(got, big) {
				t.Errorf("downloaded %d bytes, not the package", len(got))
			}
			if last != [2]int64{tg.Length, tg.Length} {
				t.Errorf("last progress = %v", last)
			}
			if _, err := os.Stat(w.dest + partialSuffix); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("partial file left behind: %v", err)
			}
			if fi, err := os.Stat(filepath.Join(w.state, "releases")); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("metadata cache: %v %v", fi.Mode(), err)
			}

			// A new release shows up on the next Refresh, also in a new
			// client that starts from the cached metadata.
			w.add(docker, "27.11.0", []byte("docker 27.11.0"))
			w.publish()
			w.refresh(c)
			if v := w.find(c, Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64"}).Version; v != "27.11.0" {
				t.Errorf("after republish newest = %s", v)
			}
			c2 := w.open()
			w.refresh(c2)
			if v := w.find(c2, Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64"}).Version; v != "27.11.0" {
				t.Errorf("second client newest = %s", v)
			}
		})
	}
}

// readKey reads a role key of a tufrepo repository.
func readKey(t *testing.T, repo, role string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "keys", role+".key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

type signable interface {
	ClearSignatures()
	Sign(signature.Signer) (*metadata.Signature, error)
	ToBytes(bool) ([]byte, error)
}

func sign(t *testing.T, m signable, key ed25519.PrivateKey) []byte {
	t.Helper()
	s, err := signature.LoadED25519Signer(key)
	if err != nil {
		t.Fatal(err)
	}
	m.ClearSignatures()
	if _, err := m.Sign(s); err != nil {
		t.Fatal(err)
	}
	b, err := m.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func metaFile(version int64, data []byte) *metadata.MetaFiles {
	s := sha256.Sum256(data)
	return &metadata.MetaFiles{Version: version, Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": s[:]}}
}

// forgeTargets publishes a targets version signed with targetsKey, with a
// snapshot and timestamp signed by the repository's own keys: only the
// targets signature is wrong.
func (w *world) forgeTargets(targetsKey ed25519.PrivateKey) {
	t := w.t
	md := filepath.Join(w.repo, "metadata")
	tg, err := metadata.Targets().FromFile(filepath.Join(md, "targets.json"))
	if err != nil {
		t.Fatal(err)
	}
	tg.Signed.Version++
	evil := []byte("evil")
	s := sha256.Sum256(evil)
	tg.Signed.Targets["engine/docker/linux-amd64/99.0.0/docker.tgz"] = &metadata.TargetFiles{Length: 4, Hashes: metadata.Hashes{"sha256": s[:]}}
	tb := sign(t, tg, targetsKey)
	w.put("metadata/"+strconv.FormatInt(tg.Signed.Version, 10)+".targets.json", tb)

	sn, err := metadata.Snapshot().FromFile(filepath.Join(md, "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	sn.Signed.Version++
	sn.Signed.Meta["targets.json"] = metaFile(tg.Signed.Version, tb)
	sb := sign(t, sn, readKey(t, w.repo, "snapshot"))
	w.put("metadata/"+strconv.FormatInt(sn.Signed.Version, 10)+".snapshot.json", sb)

	w.forgeTimestamp(sn.Signed.Version, sb)
}

// forgeTimestamp publishes a timestamp one version above the repository's,
// properly signed, naming the given snapshot.
func (w *world) forgeTimestamp(snapshotVersion int64, snapshotBytes []byte) {
	t := w.t
	ts, err := metadata.Timestamp().FromFile(filepath.Join(w.repo, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	ts.Signed.Version++
	ts.Signed.Meta["snapshot.json"] = metaFile(snapshotVersion, snapshotBytes)
	w.put("metadata/timestamp.json", sign(t, ts, readKey(t, w.repo, "timestamp")))
}

func noFile(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (%v), want nothing there", p, err)
	}
}

func TestHostile(t *testing.T) {
	ctx := context.Background()
	stable := Query{Kind: "engine", Flavor: "docker", OS: "linux", Arch: "amd64"}
	pkg := content(2, 1<<20+3)
	ago := func(d time.Duration) tufrepo.Option {
		return tufrepo.WithClock(func() time.Time { return time.Now().Add(-d) })
	}

	cases := []struct {
		name    string
		repo    []tufrepo.Option
		run     func(t *testing.T, w *world) error
		want    error
		wantMsg string
	}{
		{
			name: "expired timestamp",
			repo: []tufrepo.Option{ago(48 * time.Hour)},
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg, ago(48*time.Hour))
				w.publish(tufrepo.WithoutRenew())
				return w.open().Refresh(ctx)
			},
			want:    ErrExpired,
			wantMsg: "the publisher must re-sign timestamp and publish again (berth-control releases publish)",
		},
		{
			name: "frozen mirror",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				w.refresh(w.open())
				// A day and a half later the mirror still serves the same.
				later := w.open(func(o *Options) { o.Now = func() time.Time { return time.Now().Add(36 * time.Hour) } })
				return later.Refresh(ctx)
			},
			want:    ErrExpired,
			wantMsg: "release metadata expired at ",
		},
		{
			name: "timestamp rollback",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				old := w.read("metadata/timestamp.json")
				w.add(docker, "27.4.0", []byte("newer"))
				w.publish()
				w.refresh(w.open())
				w.put("metadata/timestamp.json", old)
				return w.open().Refresh(ctx)
			},
			want:    ErrRollback,
			wantMsg: "older metadata than this host already trusts",
		},
		{
			name: "snapshot rollback",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				oldSnap := w.read("metadata/2.snapshot.json")
				w.add(docker, "27.4.0", []byte("newer"))
				w.publish()
				w.refresh(w.open())
				w.forgeTimestamp(2, oldSnap)
				return w.open().Refresh(ctx)
			},
			want: ErrRollback,
		},
		{
			name: "targets signed by an unknown key",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				_, rogue, _ := ed25519.GenerateKey(rand.Reader)
				w.forgeTargets(rogue)
				return w.open().Refresh(ctx)
			},
			want:    ErrBadSignature,
			wantMsg: "check that engine.releases.rootFile is the root.json of the repository",
		},
		{
			name: "wrong root file",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				other := t.TempDir()
				if err := tufrepo.Init(other); err != nil {
					t.Fatal(err)
				}
				c := w.open(func(o *Options) { o.RootFile = filepath.Join(other, "metadata", "root.json") })
				return c.Refresh(ctx)
			},
			want: ErrBadSignature,
		},
		{
			name: "tampered snapshot",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				// Same length, one signature character changed.
				b := w.read("metadata/2.snapshot.json")
				i := bytes.Index(b, []byte(`"sig": "`)) + len(`"sig": "`)
				if b[i] == '0' {
					b[i] = '1'
				} else {
					b[i] = '0'
				}
				w.put("metadata/2.snapshot.json", b)
				return w.open().Refresh(ctx)
			},
			want: ErrHashMismatch,
		},
		{
			name: "endless timestamp",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				w.put("metadata/timestamp.json", bytes.Repeat([]byte(" "), 20000))
				return w.open().Refresh(ctx)
			},
			want:    ErrLengthMismatch,
			wantMsg: "larger than allowed",
		},
		{
			name: "tampered package",
			run: func(t *testing.T, w *world) error {
				tg := w.add(docker, "27.3.1", pkg)
				w.publish()
				c := w.open()
				w.refresh(c)
				evil := bytes.Clone(pkg)
				evil[len(evil)/2] ^= 0xff
				w.put(tufrepo.RemotePath(tg.Path, tg.SHA256), evil)
				err := c.Download(ctx, w.find(c, stable), w.dest, nil)
				noFile(t, w.dest+partialSuffix)
				return err
			},
			want:    ErrHashMismatch,
			wantMsg: "was tampered with or corrupted; deleted the download",
		},
		{
			name: "oversized package",
			run: func(t *testing.T, w *world) error {
				tg := w.add(docker, "27.3.1", pkg)
				w.publish()
				c := w.open()
				w.refresh(c)
				w.put(tufrepo.RemotePath(tg.Path, tg.SHA256), append(bytes.Clone(pkg), []byte("and more")...))
				err := c.Download(ctx, w.find(c, stable), w.dest, nil)
				noFile(t, w.dest+partialSuffix)
				return err
			},
			want:    ErrLengthMismatch,
			wantMsg: "more than the signed",
		},
		{
			name: "truncated package, then resumed",
			run: func(t *testing.T, w *world) error {
				tg := w.add(docker, "27.3.1", pkg)
				w.publish()
				c := w.open()
				w.refresh(c)
				remote := tufrepo.RemotePath(tg.Path, tg.SHA256)
				w.put(remote, pkg[:len(pkg)/2])
				err := c.Download(ctx, w.find(c, stable), w.dest, nil)
				noFile(t, w.dest)
				fi, serr := os.Stat(w.dest + partialSuffix)
				if serr != nil || fi.Size() != int64(len(pkg)/2) {
					t.Fatalf("partial after truncation: %v, %v", fi, serr)
				}
				// The mirror heals: the download resumes where it stopped.
				w.put(remote, pkg)
				first := int64(-1)
				if err := c.Download(ctx, w.find(c, stable), w.dest, func(done, _ int64) {
					if first < 0 {
						first = done
					}
				}); err != nil {
					t.Fatalf("resumed Download: %v", err)
				}
				if first != int64(len(pkg)/2) {
					t.Errorf("resume started at %d, want %d", first, len(pkg)/2)
				}
				if got, _ := os.ReadFile(w.dest); !bytes.Equal(got, pkg) {
					t.Errorf("resumed download differs")
				}
				os.Remove(w.dest)
				return err
			},
			want:    ErrLengthMismatch,
			wantMsg: "truncated; kept",
		},
		{
			name: "interrupted download, then resumed",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				c := w.open()
				w.refresh(c)
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				err := c.Download(cctx, w.find(c, stable), w.dest, func(done, _ int64) {
					if done > 0 {
						cancel()
					}
				})
				noFile(t, w.dest)
				if fi, serr := os.Stat(w.dest + partialSuffix); serr != nil || fi.Size() == 0 || fi.Size() >= int64(len(pkg)) {
					t.Fatalf("partial after interruption: %v, %v", fi, serr)
				}
				if err := c.Download(ctx, w.find(c, stable), w.dest, nil); err != nil {
					t.Fatalf("resumed Download: %v", err)
				}
				if got, _ := os.ReadFile(w.dest); !bytes.Equal(got, pkg) {
					t.Errorf("resumed download differs")
				}
				os.Remove(w.dest)
				return err
			},
			want: context.Canceled,
		},
		{
			name: "stale partial of other content",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				c := w.open()
				w.refresh(c)
				if err := os.MkdirAll(filepath.Dir(w.dest), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(w.dest+partialSuffix, []byte("not the package"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := c.Download(ctx, w.find(c, stable), w.dest, nil); err != nil {
					return err
				}
				if got, _ := os.ReadFile(w.dest); !bytes.Equal(got, pkg) {
					t.Errorf("download differs")
				}
				os.Remove(w.dest)
				return errors.New("ok")
			},
			wantMsg: "ok",
		},
		{
			name: "target not in the metadata",
			run: func(t *testing.T, w *world) error {
				w.add(docker, "27.3.1", pkg)
				w.publish()
				c := w.open()
				w.refresh(c)
				tg := w.find(c, stable)
				tg.SHA256 = strings.Repeat("0", 64)
				return c.Download(ctx, tg, w.dest, nil)
			},
			want: ErrHashMismatch,
		},
	}

	b := azuriteBackend("azurite", azstore.AuthSharedKey)
	place := b.setup(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, place, tc.repo...)
			err := tc.run(t, w)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %v does not say %q", err, tc.wantMsg)
			}
			t.Logf("refused: %v", err)
			noFile(t, w.dest)
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if err := tufrepo.Init(dir); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "metadata", "root.json")
	garbage := filepath.Join(t.TempDir(), "root.json")
	os.WriteFile(garbage, []byte("<html>not found</html>"), 0o644)
	tampered := filepath.Join(t.TempDir(), "root.json")
	b, _ := os.ReadFile(root)
	os.WriteFile(tampered, bytes.Replace(b, []byte(`"version": 1`), []byte(`"version": 7`), 1), 0o644)
	for _, tt := range []struct {
		name string
		o    Options
		want string
		is   error
	}{
		{"no url", Options{RootFile: root, StateDir: dir}, "set engine.releases.url", nil},
		{"no root", Options{URL: dir, StateDir: dir}, "set engine.releases.rootFile", nil},
		{"missing root", Options{URL: dir, RootFile: "/nonexistent/root.json", StateDir: dir}, "read trusted root (engine.releases.rootFile)", nil},
		{"garbage root", Options{URL: dir, RootFile: garbage, StateDir: dir}, "not TUF root metadata", nil},
		{"tampered root", Options{URL: dir, RootFile: tampered, StateDir: dir}, "not signed by its own keys", ErrBadSignature},
		{"plain http", Options{URL: "http://releases.example.com/x", RootFile: root, StateDir: dir}, "plain http is allowed only to loopback", nil},
		{"missing folder", Options{URL: "/nonexistent/releases", RootFile: root, StateDir: dir}, "releases folder", nil},
		{"sas without token", Options{URL: "https://acct1.blob.core.windows.net/releases", Credential: azstore.Credential{Auth: "sas"}, RootFile: root, StateDir: dir}, "sas auth needs sasFile or AZURE_STORAGE_SAS_TOKEN", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(azstore.EnvSASToken, "")
			_, err := Open(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v, want %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Open = %v, want errors.Is %v", err, tt.is)
			}
		})
	}
}

func TestRootRotation(t *testing.T) {
	w := newWorld(t, folderBackend.setup(t))
	w.add(docker, "27.3.1", []byte("docker"))
	w.publish()
	shipped := filepath.Join(t.TempDir(), "root.json")
	b, _ := os.ReadFile(filepath.Join(w.repo, "metadata", "root.json"))
	os.WriteFile(shipped, b, 0o644)
	c := w.open(func(o *Options) { o.RootFile = shipped })
	w.refresh(c)

	// Months later the publisher re-signs root (version 2) and publishes.
	later := tufrepo.WithClock(func() time.Time { return time.Now().Add(200 * 24 * time.Hour) })
	renewed, err := tufrepo.Renew(w.repo, later)
	if err != nil || !slices.Contains(renewed, "root") {
		t.Fatalf("Renew = %v, %v", renewed, err)
	}
	w.publish(tufrepo.WithoutRenew())
	w.refresh(c)
	cached, err := metadata.Root().FromFile(filepath.Join(w.state, "releases", "root.json"))
	if err != nil || cached.Signed.Version != 2 {
		t.Fatalf("cached root: %v, %v", cached, err)
	}
	// A restarted agent starts from the cached root 2, not the shipped 1:
	// a server that no longer has 2.root.json cannot take it back to 1.
	os.Remove(filepath.Join(w.to, "metadata", "2.root.json"))
	c2 := w.open(func(o *Options) { o.RootFile = shipped })
	w.refresh(c2)
	cached, _ = metadata.Root().FromFile(filepath.Join(w.state, "releases", "root.json"))
	if cached.Signed.Version != 2 {
		t.Fatalf("restarted agent trusts root %d, want 2", cached.Signed.Version)
	}
}

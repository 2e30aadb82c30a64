// Package tufrepo is the operator's side of Berth's signed releases: a TUF
// repository (go-tuf v2 metadata, ed25519 keys, consistent snapshots) kept in
// a folder, into which engine and agent packages are signed, and from which
// metadata and packages are published to an Azure Blob container or a
// folder that agents read with engine/release.
//
// A repository folder holds:
//
//	keys/<role>.key            ed25519 private keys (PKCS#8 PEM, 0600), one per top-level role
//	metadata/root.json         the root agents trust (ship it as engine.releases.rootFile)
//	metadata/N.root.json       every root version, for agents to walk rotations
//	metadata/N.targets.json    every targets version, and N.snapshot.json likewise
//	metadata/targets.json, snapshot.json, timestamp.json   the newest of each
//	targets/<target path>      the signed packages
//
// Target paths are engine/<flavor>/<os>-<arch>/<version>/<file> and
// agent/<os>-<arch>/<version>/<file>; each target carries the Package as
// custom metadata. Published packages are named <dir>/<sha256>.<file>, as
// go-tuf clients expect with consistent snapshots.
//
// One operator command at a time changes a repository: Init, Add, Renew and
// Publish hold a lock file in the folder.
package tufrepo

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/gofrs/flock"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Top-level TUF role names.
const (
	RoleRoot      = metadata.ROOT
	RoleTargets   = metadata.TARGETS
	RoleSnapshot  = metadata.SNAPSHOT
	RoleTimestamp = metadata.TIMESTAMP
)

var roles = []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}

// Default lifetimes of each role's metadata. The timestamp is short so that
// a frozen mirror is noticed within a day: publish at least daily (Publish
// re-signs what is close to expiry).
const (
	DefaultRootExpiry      = 365 * 24 * time.Hour
	DefaultTargetsExpiry   = 90 * 24 * time.Hour
	DefaultSnapshotExpiry  = 7 * 24 * time.Hour
	DefaultTimestampExpiry = 24 * time.Hour
)

// ErrConflict means a package or metadata file already exists with
// different content, in the repository or at the publish destination.
var ErrConflict = errors.New("conflicting content")

// ErrNotRepository means the folder holds no release repository.
var ErrNotRepository = errors.New("not a release repository")

// Option tunes Init, Add, Renew and Publish.
type Option func(*settings)

type settings struct {
	now        func() time.Time
	expiry     map[string]time.Duration
	log        *slog.Logger
	noRenew    bool
	httpClient *http.Client
}

// WithClock sets the clock that signing times and expiries are computed
// from (tests sign metadata "in the past" to get expired metadata).
func WithClock(now func() time.Time) Option { return func(s *settings) { s.now = now } }

// WithExpiry sets the lifetime of role's metadata (root, targets, snapshot
// or timestamp) for metadata signed by this call.
func WithExpiry(role string, d time.Duration) Option {
	return func(s *settings) { s.expiry[role] = d }
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.log = l } }

// WithoutRenew makes Publish upload the repository as it is, without
// re-signing metadata that is expired or close to expiry.
func WithoutRenew() Option { return func(s *settings) { s.noRenew = true } }

// WithHTTPClient sets the HTTP client Publish uses for Azure Blob Storage.
func WithHTTPClient(c *http.Client) Option { return func(s *settings) { s.httpClient = c } }

func newSettings(opts []Option) settings {
	s := settings{
		now: time.Now,
		expiry: map[string]time.Duration{
			RoleRoot:      DefaultRootExpiry,
			RoleTargets:   DefaultTargetsExpiry,
			RoleSnapshot:  DefaultSnapshotExpiry,
			RoleTimestamp: DefaultTimestampExpiry,
		},
	}
	for _, o := range opts {
		o(&s)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "tufrepo")
	return s
}

func (s settings) expires(role string) time.Time {
	return s.now().Add(s.expiry[role]).UTC().Truncate(time.Second)
}

// Target is one signed package of a repository.
type Target struct {
	// Path is the TUF target path, e.g. engine/docker/linux-amd64/27.3.1/docker-27.3.1.tgz.
	Path string `json:"path"`
	// Length is the file's size in bytes.
	Length int64 `json:"length"`
	// SHA256 is the file's hex SHA-256.
	SHA256 string `json:"sha256"`
	// Package is what the file is.
	Package Package `json:"package"`
}

// repo is a loaded repository.
type repo struct {
	dir       string
	s         settings
	keys      map[string]ed25519.PrivateKey
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	// bytes of the newest targets and snapshot, for the meta hashes.
	targetsBytes, snapshotBytes []byte
}

func metaDir(dir string) string    { return filepath.Join(dir, "metadata") }
func keysDir(dir string) string    { return filepath.Join(dir, "keys") }
func targetsDir(dir string) string { return filepath.Join(dir, "targets") }

// lock takes the repository's lock file, failing at once when another
// command holds it.
func lock(dir string) (func(), error) {
	l := flock.New(filepath.Join(dir, ".lock"))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock repository %s: %w", dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("repository %s is busy: another releases command is running on it", dir)
	}
	return func() { _ = l.Unlock() }, nil
}

// Init creates a repository in dir (created if missing, and which must not
// hold one yet): a fresh ed25519 key per top-level role and version 1 of
// every role's metadata, with consistent snapshots on.
// dir/metadata/root.json is the file agents trust.
func Init(dir string, opts ...Option) error {
	s := newSettings(opts)
	if _, err := os.Stat(filepath.Join(metaDir(dir), "root.json")); err == nil {
		return fmt.Errorf("init %s: a release repository is already there (metadata/root.json)", dir)
	}
	for _, d := range []string{dir, keysDir(dir), metaDir(dir), targetsDir(dir)} {
		perm := os.FileMode(0o755)
		if d == keysDir(dir) {
			perm = 0o700
		}
		if err := os.MkdirAll(d, perm); err != nil {
			return fmt.Errorf("init %s: %w", dir, err)
		}
	}
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()

	r := &repo{dir: dir, s: s, keys: map[string]ed25519.PrivateKey{}}
	r.root = metadata.Root(s.expires(RoleRoot))
	r.root.Signed.ConsistentSnapshot = true
	for _, role := range roles {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("init %s: generate %s key: %w", dir, role, err)
		}
		key, err := metadata.KeyFromPublicKey(priv.Public())
		if err != nil {
			return fmt.Errorf("init %s: %s key: %w", dir, role, err)
		}
		if err := r.root.Signed.AddKey(key, role); err != nil {
			return fmt.Errorf("init %s: add %s key: %w", dir, role, err)
		}
		if err := writeKey(filepath.Join(keysDir(dir), role+".key"), priv); err != nil {
			return fmt.Errorf("init %s: %w", dir, err)
		}
		r.keys[role] = priv
	}
	r.root.Signed.Version = 0
	r.targets = metadata.Targets()
	r.targets.Signed.Version = 0
	r.snapshot = metadata.Snapshot()
	r.snapshot.Signed.Version = 0
	r.timestamp = metadata.Timestamp()
	r.timestamp.Signed.Version = 0
	if err := r.bump(RoleRoot, RoleTargets); err != nil {
		return fmt.Errorf("init %s: %w", dir, err)
	}
	s.log.Info("initialised release repository", "dir", dir, "root", filepath.Join(metaDir(dir), "root.json"))
	return nil
}

func writeKey(p string, priv ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", p, err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write key %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key %s: %w", p, err)
	}
	return nil
}

func readKey(p string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s is not a PEM private key", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", p, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ed25519 key", p)
	}
	return priv, nil
}

// load reads the newest metadata and the role keys of the repository in dir.
func load(dir string, s settings) (*repo, error) {
	r := &repo{dir: dir, s: s, keys: map[string]ed25519.PrivateKey{}}
	md := metaDir(dir)
	if _, err := os.Stat(filepath.Join(md, "root.json")); err != nil {
		return nil, fmt.Errorf("%s: %w (run berth-control releases init --repo %s)", dir, ErrNotRepository, dir)
	}
	var err error
	if r.root, err = metadata.Root().FromFile(filepath.Join(md, "root.json")); err != nil {
		return nil, fmt.Errorf("load %s: %w", filepath.Join(md, "root.json"), err)
	}
	if r.targetsBytes, err = os.ReadFile(filepath.Join(md, "targets.json")); err != nil {
		return nil, fmt.Errorf("load repository %s: %w", dir, err)
	}
	if r.targets, err = metadata.Targets().FromBytes(r.targetsBytes); err != nil {
		return nil, fmt.Errorf("load %s: %w", filepath.Join(md, "targets.json"), err)
	}
	if r.snapshotBytes, err = os.ReadFile(filepath.Join(md, "snapshot.json")); err != nil {
		return nil, fmt.Errorf("load repository %s: %w", dir, err)
	}
	if r.snapshot, err = metadata.Snapshot().FromBytes(r.snapshotBytes); err != nil {
		return nil, fmt.Errorf("load %s: %w", filepath.Join(md, "snapshot.json"), err)
	}
	if r.timestamp, err = metadata.Timestamp().FromFile(filepath.Join(md, "timestamp.json")); err != nil {
		return nil, fmt.Errorf("load %s: %w", filepath.Join(md, "timestamp.json"), err)
	}
	return r, nil
}

// loadKeys reads the role keys and checks each against root.json.
func (r *repo) loadKeys() error {
	for _, role := range roles {
		p := filepath.Join(keysDir(r.dir), role+".key")
		priv, err := readKey(p)
		if err != nil {
			return fmt.Errorf("signing key for %s: %w", role, err)
		}
		key, err := metadata.KeyFromPublicKey(priv.Public())
		if err != nil {
			return fmt.Errorf("signing key %s: %w", p, err)
		}
		id, err := key.ID()
		if err != nil {
			return fmt.Errorf("signing key %s: %w", p, err)
		}
		if !contains(r.root.Signed.Roles[role].KeyIDs, id) {
			return fmt.Errorf("signing key %s is not a %s key of root.json (keys and metadata of different repositories?)", p, role)
		}
		r.keys[role] = priv
	}
	return nil
}

// bump re-signs the given roles with fresh expiries and version+1, and
// every role that records them: targets → snapshot → timestamp. Root is
// only re-signed when asked for.
func (r *repo) bump(which ...string) error {
	want := map[string]bool{}
	for _, w := range which {
		want[w] = true
	}
	if want[RoleRoot] {
		r.root.Signed.Version++
		r.root.Signed.Expires = r.s.expires(RoleRoot)
		data, err := signBytes(r.root, r.keys[RoleRoot])
		if err != nil {
			return fmt.Errorf("sign root: %w", err)
		}
		v := strconv.FormatInt(r.root.Signed.Version, 10)
		if err := r.writeMeta(v+".root.json", data); err != nil {
			return err
		}
		if err := r.writeMeta("root.json", data); err != nil {
			return err
		}
	}
	if want[RoleTargets] {
		r.targets.Signed.Version++
		r.targets.Signed.Expires = r.s.expires(RoleTargets)
		data, err := signBytes(r.targets, r.keys[RoleTargets])
		if err != nil {
			return fmt.Errorf("sign targets: %w", err)
		}
		v := strconv.FormatInt(r.targets.Signed.Version, 10)
		if err := r.writeMeta(v+".targets.json", data); err != nil {
			return err
		}
		if err := r.writeMeta("targets.json", data); err != nil {
			return err
		}
		r.targetsBytes = data
		want[RoleSnapshot] = true
	}
	if want[RoleSnapshot] {
		r.snapshot.Signed.Meta = map[string]*metadata.MetaFiles{
			"targets.json": metaFile(r.targets.Signed.Version, r.targetsBytes),
		}
		r.snapshot.Signed.Version++
		r.snapshot.Signed.Expires = r.s.expires(RoleSnapshot)
		data, err := signBytes(r.snapshot, r.keys[RoleSnapshot])
		if err != nil {
			return fmt.Errorf("sign snapshot: %w", err)
		}
		v := strconv.FormatInt(r.snapshot.Signed.Version, 10)
		if err := r.writeMeta(v+".snapshot.json", data); err != nil {
			return err
		}
		if err := r.writeMeta("snapshot.json", data); err != nil {
			return err
		}
		r.snapshotBytes = data
		want[RoleTimestamp] = true
	}
	if want[RoleTimestamp] {
		r.timestamp.Signed.Meta = map[string]*metadata.MetaFiles{
			"snapshot.json": metaFile(r.snapshot.Signed.Version, r.snapshotBytes),
		}
		r.timestamp.Signed.Version++
		r.timestamp.Signed.Expires = r.s.expires(RoleTimestamp)
		data, err := signBytes(r.timestamp, r.keys[RoleTimestamp])
		if err != nil {
			return fmt.Errorf("sign timestamp: %w", err)
		}
		if err := r.writeMeta("timestamp.json", data); err != nil {
			return err
		}
	}
	return nil
}

func metaFile(version int64, data []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(data)
	return &metadata.MetaFiles{
		Version: version,
		Length:  int64(len(data)),
		Hashes:  metadata.Hashes{"sha256": sum[:]},
	}
}

// signable is the part of go-tuf's Metadata[T] that signBytes needs.
type signable interface {
	ClearSignatures()
	Sign(signature.Signer) (*metadata.Signature, error)
	ToBytes(pretty bool) ([]byte, error)
}

func signBytes(m signable, key ed25519.PrivateKey) ([]byte, error) {
	signer, err := signature.LoadED25519Signer(key)
	if err != nil {
		return nil, err
	}
	m.ClearSignatures()
	if _, err := m.Sign(signer); err != nil {
		return nil, err
	}
	return m.ToBytes(true)
}

func (r *repo) writeMeta(name string, data []byte) error {
	if err := writeFileAtomic(filepath.Join(metaDir(r.dir), name), data, 0o644); err != nil {
		return fmt.Errorf("write metadata %s: %w", name, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside p and renames it
// over p, so readers see the old or the new content, never a mix.
func writeFileAtomic(p string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// Add signs file into the repository in dir as pkg: it copies the file to
// targets/<target path>, records it in targets with pkg as custom metadata,
// and re-signs targets, snapshot and timestamp with new versions.
//
// Adding the same file again is a no-op; adding it with another channel
// moves it to that channel. A release (kind, flavor, version, OS, arch) is
// immutable: other content for it fails with ErrConflict.
func Add(dir string, pkg Package, file string, opts ...Option) (Target, error) {
	s := newSettings(opts)
	pkg, err := pkg.normalize()
	if err != nil {
		return Target{}, fmt.Errorf("add %s: %w", file, err)
	}
	base := filepath.Base(file)
	if err := checkFileName(base); err != nil {
		return Target{}, fmt.Errorf("add %s: %w", file, err)
	}
	tpath := path.Join(pkg.dir(), base)
	if _, err := os.Stat(metaDir(dir)); err != nil {
		return Target{}, fmt.Errorf("add %s: %s: %w (run berth-control releases init --repo %s)", file, dir, ErrNotRepository, dir)
	}
	unlock, err := lock(dir)
	if err != nil {
		return Target{}, err
	}
	defer unlock()
	r, err := load(dir, s)
	if err != nil {
		return Target{}, fmt.Errorf("add %s: %w", file, err)
	}
	if err := r.loadKeys(); err != nil {
		return Target{}, fmt.Errorf("add %s: %w", file, err)
	}

	// Copy into place while hashing; decide before renaming.
	dst := filepath.Join(targetsDir(dir), filepath.FromSlash(tpath))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return Target{}, fmt.Errorf("add %s: %w", file, err)
	}
	tmp, length, sum, err := copyHashed(file, filepath.Dir(dst))
	if err != nil {
		return Target{}, fmt.Errorf("add %s: %w", file, err)
	}
	defer os.Remove(tmp)
	sumHex := hex.EncodeToString(sum)

	for p, tf := range r.targets.Signed.Targets {
		other := packageFromCustom(tf.Custom)
		if p != tpath && other.sameRelease(pkg) {
			return Target{}, fmt.Errorf("add %s: %w: %s %s is already signed as %s; a release is immutable, add the file under a new version",
				file, ErrConflict, describe(pkg), pkg.Version, p)
		}
	}
	tf := r.targets.Signed.Targets[tpath]
	if tf != nil {
		if tf.Length != length || hex.EncodeToString(tf.Hashes["sha256"]) != sumHex {
			return Target{}, fmt.Errorf("add %s: %w: %s is already signed with other content (sha256 %s); a release is immutable, add the file under a new version",
				file, ErrConflict, tpath, hex.EncodeToString(tf.Hashes["sha256"]))
		}
		if packageFromCustom(tf.Custom) == pkg {
			s.log.Info("package already signed", "target", tpath)
			return Target{Path: tpath, Length: length, SHA256: sumHex, Package: pkg}, nil
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return Target{}, fmt.Errorf("add %s: %w", file, err)
	}
	custom, err := pkg.custom()
	if err != nil {
		return Target{}, fmt.Errorf("add %s: %w", file, err)
	}
	r.targets.Signed.Targets[tpath] = &metadata.TargetFiles{
		Length: length,
		Hashes: metadata.Hashes{"sha256": sum},
		Custom: custom,
		Path:   tpath,
	}
	if err := r.bump(RoleTargets); err != nil {
		return Target{}, fmt.Errorf("add %s: %w", file, err)
	}
	s.log.Info("signed package", "target", tpath, "sha256", sumHex, "length", length,
		"channel", pkg.Channel, "targetsVersion", r.targets.Signed.Version)
	return Target{Path: tpath, Length: length, SHA256: sumHex, Package: pkg}, nil
}

func describe(p Package) string {
	if p.Kind == KindEngine {
		return fmt.Sprintf("engine %s %s/%s", p.Flavor, p.OS, p.Arch)
	}
	return fmt.Sprintf("agent %s/%s", p.OS, p.Arch)
}

// copyHashed copies src into a temporary file in dir, returning its name,
// length and SHA-256.
func copyHashed(src, dir string) (string, int64, []byte, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, nil, err
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, ".add-*")
	if err != nil {
		return "", 0, nil, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(out.Name(), 0o644)
	}
	if err != nil {
		os.Remove(out.Name())
		return "", 0, nil, err
	}
	return out.Name(), n, h.Sum(nil), nil
}

// List returns the packages signed into the repository in dir, sorted by
// target path.
func List(dir string) ([]Target, error) {
	r, err := load(dir, newSettings(nil))
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	return r.list(), nil
}

func (r *repo) list() []Target {
	out := make([]Target, 0, len(r.targets.Signed.Targets))
	for p, tf := range r.targets.Signed.Targets {
		out = append(out, Target{
			Path:    p,
			Length:  tf.Length,
			SHA256:  hex.EncodeToString(tf.Hashes["sha256"]),
			Package: packageFromCustom(tf.Custom),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Renew re-signs, with version+1 and a fresh expiry, every role whose
// metadata has expired or has less than half its lifetime left, and the
// roles that record it. It returns the roles it re-signed. Publish calls it
// unless WithoutRenew is given; run it (or publish) at least daily, since
// the timestamp lives one day.
func Renew(dir string, opts ...Option) ([]string, error) {
	s := newSettings(opts)
	if _, err := os.Stat(metaDir(dir)); err != nil {
		return nil, fmt.Errorf("renew: %s: %w", dir, ErrNotRepository)
	}
	unlock, err := lock(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return renew(dir, s)
}

func renew(dir string, s settings) ([]string, error) {
	r, err := load(dir, s)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	due := func(role string, expires time.Time) bool {
		return expires.Before(s.now().Add(s.expiry[role] / 2))
	}
	var which []string
	if due(RoleRoot, r.root.Signed.Expires) {
		which = append(which, RoleRoot)
	}
	if due(RoleTargets, r.targets.Signed.Expires) {
		which = append(which, RoleTargets)
	}
	if due(RoleSnapshot, r.snapshot.Signed.Expires) {
		which = append(which, RoleSnapshot)
	}
	if due(RoleTimestamp, r.timestamp.Signed.Expires) {
		which = append(which, RoleTimestamp)
	}
	if len(which) == 0 {
		return nil, nil
	}
	if err := r.loadKeys(); err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	if err := r.bump(which...); err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	s.log.Info("re-signed release metadata", "roles", which, "timestampExpires", r.timestamp.Signed.Expires)
	return which, nil
}

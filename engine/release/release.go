// Package release is the agent's side of Berth's signed releases: it keeps
// TUF release metadata (go-tuf v2) up to date from an Azure Blob container,
// an HTTPS server or a folder, trusting only the root shipped with the
// agent; finds engine and agent packages in it; and downloads them
// resumably, checking length and SHA-256 against the signed metadata
// before anything reaches its destination.
//
// Every refusal of hostile or broken input wraps one of the sentinels
// ErrExpired, ErrRollback, ErrBadSignature, ErrHashMismatch and
// ErrLengthMismatch, for errors.Is; the message says what to do.
package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/berthhq/berth/internal/azstore"
)

// Sentinels for the refusals a caller may want to tell apart.
var (
	// ErrExpired: the metadata's expiry has passed — a frozen mirror, or a
	// publisher that stopped re-signing.
	ErrExpired = errors.New("release metadata expired")
	// ErrRollback: the server offers metadata older than what this host
	// already trusts, or versions that do not agree with each other.
	ErrRollback = errors.New("release metadata rollback")
	// ErrBadSignature: metadata not signed by the keys the trusted root
	// names (an unknown key, tampering, or the wrong root file).
	ErrBadSignature = errors.New("release metadata signature not trusted")
	// ErrHashMismatch: content whose SHA-256 differs from the signed one.
	ErrHashMismatch = errors.New("hash mismatch")
	// ErrLengthMismatch: content shorter (truncated) or longer than signed.
	ErrLengthMismatch = errors.New("length mismatch")
	// ErrNotFound: no package matches a Query.
	ErrNotFound = errors.New("no matching release package")
)

// Options configure a Client. URL, RootFile and StateDir are required.
type Options struct {
	// URL is where the repository is published: an Azure Blob container
	// URL, any https base, or a folder (engine.releases.url).
	URL string
	// Credential authenticates to Azure Blob Storage (engine.releases.auth…).
	Credential azstore.Credential
	// RootFile is the trusted root metadata shipped with the agent.
	RootFile string
	// StateDir is the agent's state folder; verified metadata is kept in
	// <StateDir>/releases.
	StateDir string
	// HTTPClient carries HTTPS and Azure requests; nil means a plain client.
	HTTPClient *http.Client
	// Logger receives progress and refusals; nil discards.
	Logger *slog.Logger
	// Now is the clock metadata expiry is checked against; nil is time.Now.
	Now func() time.Time
}

// Client reads signed release metadata and downloads packages.
// It is safe for concurrent use.
type Client struct {
	opts     Options
	src      source
	cacheDir string
	log      *slog.Logger

	refreshMu sync.Mutex // one go-tuf update of the cache at a time

	mu      sync.Mutex
	targets map[string]*metadata.TargetFiles
	version int64 // trusted targets version
}

// Open checks the options and the trusted root and prepares the metadata
// cache; it makes no network request. Call Refresh before Find.
func Open(_ context.Context, opts Options) (*Client, error) {
	if opts.URL == "" {
		return nil, errors.New("open releases: no URL: set engine.releases.url")
	}
	if opts.RootFile == "" {
		return nil, errors.New("open releases: no trusted root: set engine.releases.rootFile to the root.json shipped with the agent")
	}
	if opts.StateDir == "" {
		return nil, errors.New("open releases: no state folder")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "release")
	if opts.Now == nil {
		opts.Now = time.Now
	}
	root, err := os.ReadFile(opts.RootFile)
	if err != nil {
		return nil, fmt.Errorf("open releases: read trusted root (engine.releases.rootFile): %w", err)
	}
	if err := checkRoot(root); err != nil {
		return nil, fmt.Errorf("open releases: trusted root %s: %w", opts.RootFile, err)
	}
	src, err := newSource(opts.URL, opts.Credential, opts.HTTPClient, log)
	if err != nil {
		return nil, fmt.Errorf("open releases: %w", err)
	}
	c := &Client{opts: opts, src: src, cacheDir: filepath.Join(opts.StateDir, "releases"), log: log}
	if err := os.MkdirAll(c.cacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("open releases: %w", err)
	}
	return c, nil
}

// checkRoot parses root metadata and checks it is signed by its own keys.
func checkRoot(data []byte) error {
	r, err := metadata.Root().FromBytes(data)
	if err != nil {
		return fmt.Errorf("not TUF root metadata: %w", err)
	}
	if err := r.VerifyDelegate(metadata.ROOT, r); err != nil {
		return fmt.Errorf("%w: the root is not signed by its own keys: %w", ErrBadSignature, err)
	}
	return nil
}

const shippedRootMark = "shipped-root.sha256"

// trustedRoot returns the root to start a refresh from: the cached root
// (which may have rotated forward, each step verified) when it descends
// from the shipped root file, else the shipped root. A different shipped
// root (an agent upgrade or a new repository) starts over from it.
func (c *Client) trustedRoot() ([]byte, error) {
	shipped, err := os.ReadFile(c.opts.RootFile)
	if err != nil {
		return nil, fmt.Errorf("read trusted root (engine.releases.rootFile): %w", err)
	}
	sum := sha256.Sum256(shipped)
	mark := hex.EncodeToString(sum[:])
	markFile := filepath.Join(c.cacheDir, shippedRootMark)
	if old, err := os.ReadFile(markFile); err == nil && strings.TrimSpace(string(old)) == mark {
		if cached, err := os.ReadFile(filepath.Join(c.cacheDir, "root.json")); err == nil {
			if checkRoot(cached) == nil {
				return cached, nil
			}
		}
	}
	if err := checkRoot(shipped); err != nil {
		return nil, fmt.Errorf("trusted root %s: %w", c.opts.RootFile, err)
	}
	if err := os.WriteFile(markFile, []byte(mark+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("remember trusted root: %w", err)
	}
	return shipped, nil
}

// Refresh fetches and verifies the newest metadata: root rotations,
// timestamp, snapshot and targets, refusing expired, rolled-back and
// badly signed metadata. The verified metadata is kept in
// <StateDir>/releases, so rollback protection survives restarts.
func (c *Client) Refresh(ctx context.Context) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	root, err := c.trustedRoot()
	if err != nil {
		return fmt.Errorf("refresh releases: %w", err)
	}
	cfg, err := config.New("metadata", root)
	if err != nil {
		return fmt.Errorf("refresh releases: %w", err)
	}
	cfg.Fetcher = tufFetcher{ctx: ctx, src: c.src}
	cfg.LocalMetadataDir = c.cacheDir
	cfg.LocalTargetsDir = c.cacheDir // unused: packages go where Download says
	cfg.RemoteTargetsURL = "targets"
	cfg.PrefixTargetsWithHash = true
	up, err := updater.New(cfg)
	if err != nil {
		return fmt.Errorf("refresh releases from %s: %w", c.src, c.explain(nil, err))
	}
	up.UnsafeSetRefTime(c.opts.Now().UTC())
	if err := up.Refresh(); err != nil {
		err = c.explain(up, err)
		c.log.Warn("release metadata refused", "url", c.src.String(), "err", err)
		return fmt.Errorf("refresh releases from %s: %w", c.src, err)
	}
	tm := up.GetTrustedMetadataSet()
	targets := map[string]*metadata.TargetFiles{}
	for p, t := range up.GetTopLevelTargets() {
		targets[p] = t
	}
	c.mu.Lock()
	c.targets = targets
	c.version = tm.Targets[metadata.TARGETS].Signed.Version
	c.mu.Unlock()
	c.log.Info("release metadata verified", "url", c.src.String(),
		"root", tm.Root.Signed.Version, "targets", c.version, "timestamp", tm.Timestamp.Signed.Version,
		"expires", tm.Timestamp.Signed.Expires, "packages", len(targets))
	return nil
}

// explain maps go-tuf's errors onto this package's sentinels with advice.
func (c *Client) explain(up *updater.Updater, err error) error {
	switch {
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		when := ""
		role := "timestamp"
		if up != nil {
			tm := up.GetTrustedMetadataSet()
			msg := err.Error()
			switch {
			case strings.Contains(msg, "root"):
				role = "root"
				when = " at " + tm.Root.Signed.Expires.Format(time.RFC3339)
			case strings.Contains(msg, "snapshot") && tm.Snapshot != nil:
				role = "snapshot"
				when = " at " + tm.Snapshot.Signed.Expires.Format(time.RFC3339)
			case strings.Contains(msg, "targets"):
				role = "targets"
			case tm.Timestamp != nil:
				when = " at " + tm.Timestamp.Signed.Expires.Format(time.RFC3339)
			}
		}
		return fmt.Errorf("%w%s (%s): the publisher must re-sign %s and publish again (berth-control releases publish); until then this host keeps what it has: %w",
			ErrExpired, when, role, role, err)
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return fmt.Errorf("%w: the server offers older metadata than this host already trusts (or inconsistent versions): a stale mirror or an attack; publish the newest repository there (berth-control releases publish): %w",
			ErrRollback, err)
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return fmt.Errorf("%w: check that engine.releases.rootFile is the root.json of the repository at %s; if it is, the metadata there was tampered with: %w",
			ErrBadSignature, c.src, err)
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		if strings.Contains(err.Error(), "length verification failed") {
			return fmt.Errorf("%w: metadata at %s does not have the signed length (tampered or half-published); publish again: %w", ErrLengthMismatch, c.src, err)
		}
		return fmt.Errorf("%w: metadata at %s does not have the signed hash (tampered or half-published); publish again: %w", ErrHashMismatch, c.src, err)
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}):
		return fmt.Errorf("%w: metadata at %s is larger than allowed: %w", ErrLengthMismatch, c.src, err)
	}
	var dl *metadata.ErrDownloadHTTP
	if errors.As(err, &dl) && dl.StatusCode == http.StatusNotFound {
		return fmt.Errorf("release metadata %s not found at %s: publish the repository there (berth-control releases publish): %w", dl.URL, c.src, err)
	}
	return err
}

// Query selects a package. Kind is required; empty OS and Arch mean this
// host's; an empty Channel means stable.
type Query struct {
	// Kind is engine or agent.
	Kind string
	// Flavor is docker or containerd, for engines.
	Flavor string
	// Version pins a version; "" means the newest in Channel.
	Version string
	// Channel is used when Version is "".
	Channel string
	// OS and Arch default to runtime.GOOS and runtime.GOARCH.
	OS, Arch string
}

// Target is a signed package.
type Target struct {
	// Path is the TUF target path.
	Path string
	// Version is the package's version (from its custom metadata).
	Version string
	// Length is the signed size in bytes.
	Length int64
	// SHA256 is the signed hex SHA-256.
	SHA256 string
	// Custom is the signed custom metadata: kind, flavor, version, os,
	// arch, channel.
	Custom map[string]string
}

// Targets returns every signed package, sorted by path.
func (c *Client) Targets() ([]Target, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.targets == nil {
		return nil, errors.New("release metadata not loaded: call Refresh first")
	}
	out := make([]Target, 0, len(c.targets))
	for p, tf := range c.targets {
		out = append(out, toTarget(p, tf))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func toTarget(p string, tf *metadata.TargetFiles) Target {
	t := Target{Path: p, Length: tf.Length, SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Custom: map[string]string{}}
	if tf.Custom != nil {
		var m map[string]any
		if json.Unmarshal(*tf.Custom, &m) == nil {
			for k, v := range m {
				if s, ok := v.(string); ok {
					t.Custom[k] = s
				}
			}
		}
	}
	t.Version = t.Custom["version"]
	return t
}

// Find returns the package q selects: the pinned version, or the newest
// version in the channel (see CompareVersions). No match gives ErrNotFound.
func (c *Client) Find(q Query) (Target, error) {
	if q.Kind == "" {
		return Target{}, errors.New("find release: no kind (engine or agent)")
	}
	if q.OS == "" {
		q.OS = runtime.GOOS
	}
	if q.Arch == "" {
		q.Arch = runtime.GOARCH
	}
	if q.Channel == "" {
		q.Channel = "stable"
	}
	all, err := c.Targets()
	if err != nil {
		return Target{}, fmt.Errorf("find release: %w", err)
	}
	var found []Target
	for _, t := range all {
		m := t.Custom
		if t.SHA256 == "" || m["kind"] != q.Kind || m["os"] != q.OS || m["arch"] != q.Arch || m["flavor"] != q.Flavor {
			continue
		}
		if q.Version != "" {
			if t.Version == q.Version {
				found = append(found, t)
			}
		} else if m["channel"] == q.Channel {
			found = append(found, t)
		}
	}
	what := describe(q)
	if len(found) == 0 {
		c.mu.Lock()
		v := c.version
		c.mu.Unlock()
		return Target{}, fmt.Errorf("find release: %w: %s (release metadata targets version %d, %d packages): publish one with berth-control releases add",
			ErrNotFound, what, v, len(all))
	}
	sort.SliceStable(found, func(i, j int) bool { return CompareVersions(found[i].Version, found[j].Version) > 0 })
	if len(found) > 1 && found[0].Version == found[1].Version {
		return Target{}, fmt.Errorf("find release: %s: version %s is signed twice (%s and %s): the repository must hold one file per release",
			what, found[0].Version, found[0].Path, found[1].Path)
	}
	return found[0], nil
}

func describe(q Query) string {
	var b strings.Builder
	b.WriteString(q.Kind)
	if q.Flavor != "" {
		b.WriteString(" " + q.Flavor)
	}
	b.WriteString(" for " + q.OS + "/" + q.Arch)
	if q.Version != "" {
		b.WriteString(" version " + q.Version)
	} else {
		b.WriteString(" in channel " + q.Channel)
	}
	return b.String()
}

// signed returns the trusted entry for t, refusing targets that the
// verified metadata does not hold with the same length and hash.
func (c *Client) signed(t Target) (Target, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.targets == nil {
		return Target{}, errors.New("release metadata not loaded: call Refresh first")
	}
	tf, ok := c.targets[t.Path]
	if !ok {
		return Target{}, fmt.Errorf("%w: %s is not in the verified release metadata", ErrNotFound, t.Path)
	}
	st := toTarget(t.Path, tf)
	if st.SHA256 == "" || len(st.SHA256) != 64 {
		return Target{}, fmt.Errorf("%w: %s has no sha256 in the release metadata", ErrHashMismatch, t.Path)
	}
	if (t.SHA256 != "" && t.SHA256 != st.SHA256) || (t.Length != 0 && t.Length != st.Length) {
		return Target{}, fmt.Errorf("%w: %s differs from the verified release metadata", ErrHashMismatch, t.Path)
	}
	return st, nil
}

// remotePath is where a target is published: targets/<dir>/<sha256>.<file>.
func remotePath(t Target) string {
	dir, file := "", t.Path
	if i := strings.LastIndex(t.Path, "/"); i >= 0 {
		dir, file = t.Path[:i+1], t.Path[i+1:]
	}
	return "targets/" + dir + t.SHA256 + "." + file
}

package selfupdate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"time"

	"github.com/gofrs/flock"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/engine/archive"
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/filehash"
	"github.com/berthhq/berth/internal/statedb"
)

// AgentsDir is the folder under the state folder that holds one folder per
// staged agent version.
const AgentsDir = "agents"

// BinaryName is the agent executable at the root of an agent package.
func BinaryName(goos string) string {
	if goos == "windows" {
		return "berth-agent.exe"
	}
	return "berth-agent"
}

// packageLimits bound what an agent package may unpack to: one binary and
// a few files beside it (a licence, a readme).
var packageLimits = archive.Limits{MaxEntryBytes: 512 << 20, MaxTotalBytes: 1 << 30, MaxEntries: 64}

// ErrBlacklisted marks a version the launcher gave up on on this host.
var ErrBlacklisted = errors.New("agent version blacklisted on this host")

// Stager puts verified agent versions under <stateDir>/agents and selects
// them. The daemon's Updater and `berth-agent self-update` use it; both
// may run at once (a lock file orders them).
type Stager struct {
	DB       *statedb.DB
	Releases *release.Client
	StateDir string
	// Launcher is the installed binary's version: selecting it needs no
	// package.
	Launcher string
	Events   Events
	Log      *slog.Logger
	// Progress is told of the download; nil for none.
	Progress func(done, total int64)
}

// Find refreshes the release metadata and returns the agent package of
// version, or with version "" the newest one of channel for this host's
// OS and architecture. A version that is not signed wraps
// release.ErrNotFound.
func (s *Stager) Find(ctx context.Context, version, channel string) (release.Target, error) {
	if version != "" {
		if err := wire.CheckVersion(version); err != nil {
			return release.Target{}, fmt.Errorf("agent version %q: %w", version, err)
		}
	}
	if s.Releases == nil {
		return release.Target{}, errors.New("find an agent package: engine.releases.url is not set, so this host has no signed release metadata; set it (and engine.releases.rootFile)")
	}
	if err := s.Releases.Refresh(ctx); err != nil {
		return release.Target{}, fmt.Errorf("find an agent package: %w", err)
	}
	t, err := s.Releases.Find(release.Query{Kind: wire.KindAgent, Version: version, Channel: channel})
	if err != nil {
		return release.Target{}, err
	}
	if err := wire.CheckVersion(t.Version); err != nil {
		return release.Target{}, fmt.Errorf("signed agent package %s has a bad version %q: %w", t.Path, t.Version, err)
	}
	return t, nil
}

// Stage makes t's version runnable: downloaded (verified against the
// signed length and hash), unpacked into <stateDir>/agents/<version>/ all
// or nothing, its binary hashed and recorded. A version staged before,
// whose binary still has its recorded hash, is kept as is.
func (s *Stager) Stage(ctx context.Context, t release.Target) (Staged, error) {
	v := t.Version
	dir := filepath.Join(s.StateDir, AgentsDir, v)
	unlock, err := lockStaging(ctx, s.StateDir)
	if err != nil {
		return Staged{}, err
	}
	defer unlock()
	st, err := Load(ctx, s.DB)
	if err != nil {
		return Staged{}, err
	}
	if have, ok := st.Staged[v]; ok && verifyBinary(have) == nil {
		return have, nil
	}
	// A folder without a record (a crash between unpacking and recording,
	// or a binary that no longer has its hash) is unpacked again.
	if err := os.RemoveAll(dir); err != nil {
		return Staged{}, fmt.Errorf("stage agent %s: remove the old %s: %w", v, dir, err)
	}
	if err := archive.CleanPartials(dir); err != nil {
		return Staged{}, fmt.Errorf("stage agent %s: %w", v, err)
	}
	download := filepath.Join(s.StateDir, AgentsDir, ".download", path.Base(t.Path))
	if err := s.Releases.Download(ctx, t, download, s.Progress); err != nil {
		return Staged{}, fmt.Errorf("stage agent %s: %w", v, err)
	}
	defer os.Remove(download)
	if err := archive.Extract(ctx, download, dir, packageLimits); err != nil {
		return Staged{}, fmt.Errorf("stage agent %s: %w", v, err)
	}
	staged, err := hashBinary(filepath.Join(dir, BinaryName(runtime.GOOS)))
	if err != nil {
		_ = os.RemoveAll(dir)
		return Staged{}, fmt.Errorf("stage agent %s: package %s: %w", v, t.Path, err)
	}
	if _, err := mutate(ctx, s.DB, func(st *State) error {
		if st.Staged == nil {
			st.Staged = map[string]Staged{}
		}
		st.Staged[v] = staged
		return nil
	}); err != nil {
		return Staged{}, err
	}
	s.log().Info("agent version staged", "version", v, "binary", staged.Binary)
	s.prune(ctx, v)
	return staged, nil
}

// Select tells the launcher to run v (staged, or the launcher's own
// version). An operator's explicit choice (force) clears v's blacklist
// entry; control's desired version never does.
func (s *Stager) Select(ctx context.Context, v string, force bool) error {
	_, err := mutate(ctx, s.DB, func(st *State) error {
		if f, bad := st.Blacklist[v]; bad && !force {
			return fmt.Errorf("select agent %s: %w (%s at %s: %s)", v, ErrBlacklisted, f.Reason, f.At.Format(time.RFC3339), f.Message)
		}
		if _, ok := st.Staged[v]; !ok && v != s.Launcher {
			return fmt.Errorf("select agent %s: not staged under %s", v, filepath.Join(s.StateDir, AgentsDir))
		}
		delete(st.Blacklist, v)
		if st.Launcher == "" {
			st.Launcher = s.Launcher
		}
		st.Selected = v
		return nil
	})
	if err == nil {
		s.log().Info("agent version selected; the launcher switches to it", "version", v)
	}
	return err
}

func (s *Stager) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// lockStaging orders the stagers of one host (the daemon and a
// `self-update` command): the second waits, up to ctx.
func lockStaging(ctx context.Context, stateDir string) (func(), error) {
	dir := filepath.Join(stateDir, AgentsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stage an agent version: %w", err)
	}
	l := flock.New(filepath.Join(dir, ".stage.lock"))
	ok, err := l.TryLockContext(ctx, 100*time.Millisecond)
	if err != nil || !ok {
		return nil, fmt.Errorf("stage an agent version: lock %s: %w", l.Path(), errors.Join(err, ctx.Err()))
	}
	return func() { _ = l.Unlock() }, nil
}

// hashBinary records the unpacked agent executable, which must be a
// regular file at the package's root.
func hashBinary(bin string) (Staged, error) {
	fi, err := os.Lstat(bin)
	if errors.Is(err, fs.ErrNotExist) {
		return Staged{}, fmt.Errorf("no %s at the package's root: an agent package holds the binary at its root", filepath.Base(bin))
	}
	if err != nil {
		return Staged{}, err
	}
	if !fi.Mode().IsRegular() {
		return Staged{}, fmt.Errorf("%s is a %s, not a file", filepath.Base(bin), fi.Mode().Type())
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		return Staged{}, err
	}
	sum, _, err := filehash.SHA256(bin)
	if err != nil {
		return Staged{}, err
	}
	return Staged{Binary: bin, SHA256: sum, At: time.Now().UTC()}, nil
}

// verifyBinary checks that a staged binary still has the hash it was
// unpacked with: a damaged or changed file is never started.
func verifyBinary(s Staged) error {
	sum, _, err := filehash.SHA256(s.Binary)
	if err != nil {
		return fmt.Errorf("check %s: %w", s.Binary, err)
	}
	if sum != s.SHA256 {
		return fmt.Errorf("%s has sha256 %s, not the %s it was unpacked with: changed or damaged on disk", s.Binary, sum, s.SHA256)
	}
	return nil
}

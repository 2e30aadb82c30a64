package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/berthhq/berth/engine/archive"
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/atomicfile"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/statedb"
)

// Options wire a Manager.
type Options struct {
	Flavor Flavor
	Runner Runner
	// Releases finds and downloads signed packages; nil when the host has
	// no release source (then only installed versions can be used).
	Releases *release.Client
	StateDir string
	DB       *statedb.DB
	// Managed false makes every change an ErrUnmanaged error.
	Managed bool
	// Config is what Berth writes into the engine's configuration.
	Config ConfigInput
	// HealthTimeout bounds how long a started version has to become healthy.
	HealthTimeout time.Duration
	Channel       string
	OS, Arch      string // default: this machine's
	Logger        *slog.Logger
	// Progress is told of long steps (download, unpack, health wait).
	Progress ProgressFunc
	// OnEvent is told of every change worth reporting to control.
	OnEvent func(Event)
}

// ProgressFunc is told how far a long step is; total is -1 when unknown.
type ProgressFunc func(stage string, done, total int64)

// Event is a change of the engine worth reporting.
type Event struct {
	Kind    string    `json:"kind"` // installed | upgrade-started | upgrade-succeeded | rolled-back | restarted | config-repaired | failed | rejected
	Flavor  string    `json:"flavor"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// Manager runs the lifecycle of one flavor's engine on this host.
type Manager struct {
	o   Options
	log *slog.Logger
	dir string // <stateDir>/engines/<flavor>
	// logFrom is the size of the daemon's log when it was last started, so
	// that an error quotes what this start wrote, not an older daemon.
	logFrom int64
}

// New returns a Manager. It does no I/O.
func New(o Options) (*Manager, error) {
	if o.Flavor == nil || o.Runner == nil || o.DB == nil || o.StateDir == "" {
		return nil, errors.New("engine manager: flavor, runner, state dir and database are required")
	}
	if o.OS == "" {
		o.OS = runtime.GOOS
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = 120 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(string, int64, int64) {}
	}
	if o.OnEvent == nil {
		o.OnEvent = func(Event) {}
	}
	return &Manager{
		o:   o,
		log: o.Logger.With("component", "engine", "flavor", o.Flavor.Name()),
		dir: paths.Engines(o.StateDir, o.Flavor.Name()),
	}, nil
}

func (m *Manager) versionDir(v string) string { return filepath.Join(m.dir, v) }
func (m *Manager) confDir() string            { return ConfigDir(m.o.StateDir, m.o.Flavor.Name()) }

// ConfigDir is the folder a flavor's configuration is written to,
// <stateDir>/engines/<flavor>/config, shared by every version.
func ConfigDir(stateDir, flavor string) string {
	return filepath.Join(paths.Engines(stateDir, flavor), "config")
}
func (m *Manager) daemon(v string) Daemon {
	d := m.o.Flavor.Daemon(m.versionDir(v), m.confDir())
	if pf, ok := m.o.Flavor.(PIDFiler); ok {
		d.PIDFile = pf.PIDFile(m.o.Config)
	}
	return d
}

// lock takes the flavor's lock file, shared by every agent process on the
// host, so that the daemon's watch loop and an operator's command never
// change the engine at the same time. It waits until ctx ends.
func (m *Manager) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, fmt.Errorf("engine lock: %w", err)
	}
	fl := flock.New(filepath.Join(m.dir, ".lock"))
	ok, err := fl.TryLockContext(ctx, 100*time.Millisecond)
	if err != nil || !ok {
		return nil, fmt.Errorf("wait for the engine lock (another berth-agent is changing the engine): %w", errors.Join(err, ctx.Err()))
	}
	return func() { _ = fl.Unlock() }, nil
}

// tryLock is lock without waiting: it reports false when another process
// holds it.
func (m *Manager) tryLock() (func(), bool, error) {
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("engine lock: %w", err)
	}
	fl := flock.New(filepath.Join(m.dir, ".lock"))
	ok, err := fl.TryLock()
	if err != nil || !ok {
		return nil, false, err
	}
	return func() { _ = fl.Unlock() }, true, nil
}

func (m *Manager) emit(kind, from, to, msg string) {
	ev := Event{Kind: kind, Flavor: m.o.Flavor.Name(), From: from, To: to, Message: msg, Time: time.Now().UTC()}
	m.log.Info("engine event", "event", kind, "from", from, "to", to, "message", msg)
	m.o.OnEvent(ev)
}

// Installed lists the versions unpacked on this host, oldest first.
func (m *Manager) Installed() ([]string, error) {
	entries, err := os.ReadDir(m.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list installed engines: %w", err)
	}
	var vs []string
	for _, e := range entries {
		if e.IsDir() && CheckVersion(e.Name()) == nil && m.isInstalled(e.Name()) {
			vs = append(vs, e.Name())
		}
	}
	slices.SortFunc(vs, release.CompareVersions)
	return vs, nil
}

func (m *Manager) isInstalled(v string) bool {
	_, err := os.Stat(m.daemon(v).Path)
	return err == nil
}

// Install makes version v available on the host: it downloads the signed
// package, verifies it and unpacks it into its own folder. When no engine
// is active yet, it also configures and starts v.
func (m *Manager) Install(ctx context.Context, v string) error {
	unlock, err := m.begin(ctx, v)
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.fetch(ctx, v); err != nil {
		return err
	}
	st, err := m.loadState(ctx)
	if err != nil {
		return err
	}
	if st.Active != "" {
		return nil
	}
	if err := prerequisites(ctx); err != nil {
		return err
	}
	return m.switchTo(ctx, st, "install", v)
}

// Upgrade installs v if needed and switches the engine to it behind a health
// gate; a version that is not healthy within the timeout is rolled back and
// remembered as failed. Asking for the version that already runs is a no-op.
func (m *Manager) Upgrade(ctx context.Context, v string) error {
	unlock, err := m.begin(ctx, v)
	if err != nil {
		return err
	}
	defer unlock()
	return m.upgradeLocked(ctx, v)
}

// begin is how every command that changes the engine starts: refuse when
// unmanaged or when the version is not a safe name, take the engine lock,
// and finish whatever an earlier agent left half done.
func (m *Manager) begin(ctx context.Context, v string) (func(), error) {
	if !m.o.Managed {
		return nil, ErrUnmanaged
	}
	if v != "" {
		if err := CheckVersion(v); err != nil {
			return nil, err
		}
	}
	unlock, err := m.lock(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.recover(ctx); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// upgradeLocked switches to v; the caller holds the lock and has recovered.
func (m *Manager) upgradeLocked(ctx context.Context, v string) error {
	st, err := m.loadState(ctx)
	if err != nil {
		return err
	}
	if st.Active == v {
		return m.ensureRunning(ctx, st)
	}
	if err := m.fetch(ctx, v); err != nil {
		return err
	}
	op := "upgrade"
	if st.Active == "" {
		op = "install"
		if err := prerequisites(ctx); err != nil {
			return err
		}
	}
	return m.switchTo(ctx, st, op, v)
}

// Rollback switches the engine back to the previous version, behind the same
// health gate as an upgrade.
func (m *Manager) Rollback(ctx context.Context) error {
	unlock, err := m.begin(ctx, "")
	if err != nil {
		return err
	}
	defer unlock()
	st, err := m.loadState(ctx)
	if err != nil {
		return err
	}
	if st.Previous == "" || st.Previous == st.Active {
		return ErrNoPrevious
	}
	if !m.isInstalled(st.Previous) {
		return fmt.Errorf("roll back to %s: %w", st.Previous, ErrNotInstalled)
	}
	return m.switchTo(ctx, st, "rollback", st.Previous)
}

// Recover finishes or undoes a switch that an earlier agent left half done.
// Every entry point calls it first; the daemon calls it at start.
func (m *Manager) Recover(ctx context.Context) error {
	if !m.o.Managed {
		return nil
	}
	unlock, err := m.begin(ctx, "")
	if err != nil {
		return err
	}
	unlock()
	return nil
}

func (m *Manager) recover(ctx context.Context) error {
	st, err := m.loadState(ctx)
	if err != nil {
		return err
	}
	j := st.Journal
	if j == nil {
		return nil
	}
	m.log.Warn("resuming an interrupted engine change", "op", j.Op, "from", j.From, "to", j.To, "step", j.Step)
	switch j.Step {
	case StepBegin, StepStopped:
		// The new version was never recorded as started: put the old one back.
		if j.From == "" {
			if err := m.o.Runner.Stop(ctx); err != nil {
				return fmt.Errorf("undo interrupted install of %s: %w", j.To, err)
			}
			st.Active, st.Journal = "", nil
			return saveState(ctx, m.o.DB, m.o.Flavor.Name(), st)
		}
		if err := m.restart(ctx, j.From); err != nil {
			return fmt.Errorf("undo interrupted %s to %s: %w", j.Op, j.To, err)
		}
		st.Active, st.Journal = j.From, nil
		if err := saveState(ctx, m.o.DB, m.o.Flavor.Name(), st); err != nil {
			return err
		}
		if err := m.waitHealthy(ctx, j.From); err != nil {
			return fmt.Errorf("undo interrupted %s to %s: %s is not healthy: %w", j.Op, j.To, j.From, err)
		}
		m.emit("rolled-back", j.To, j.From, "interrupted "+j.Op+" undone after an agent restart")
		return nil
	case StepStarted:
		rs, err := m.o.Runner.State(ctx)
		if err != nil {
			return err
		}
		if !rs.Running || m.versionOf(rs.Exe) != j.To {
			if err := m.restart(ctx, j.To); err != nil {
				return m.rollBack(ctx, st, fmt.Sprintf("start %s: %v", j.To, err))
			}
		}
		return m.gate(ctx, st)
	case StepRollingBack:
		return m.rollBack(ctx, st, j.Reason)
	default:
		return fmt.Errorf("engine journal has unknown step %q; remove the journal with care or reinstall", j.Step)
	}
}

// switchTo moves the engine from st.Active to v, journaling each step.
func (m *Manager) switchTo(ctx context.Context, st State, op, v string) error {
	from := st.Active
	flavor := m.o.Flavor.Name()
	st.Journal = &Journal{Op: op, From: from, To: v, Step: StepBegin, Started: time.Now().UTC()}
	if err := saveState(ctx, m.o.DB, flavor, st); err != nil {
		return err
	}
	m.emit(op+"-started", from, v, "")
	m.o.Progress("stop "+orNone(from), 0, -1)
	if err := m.o.Runner.Stop(ctx); err != nil {
		return m.rollBack(ctx, st, fmt.Sprintf("stop %s: %v", orNone(from), err))
	}
	st.Journal.Step = StepStopped
	if err := saveState(ctx, m.o.DB, flavor, st); err != nil {
		return err
	}
	if err := m.writeConfig(); err != nil {
		return m.rollBack(ctx, st, err.Error())
	}
	m.o.Progress("start "+v, 0, -1)
	if err := m.start(ctx, v); err != nil {
		return m.rollBack(ctx, st, fmt.Sprintf("start %s: %v", v, err))
	}
	st.Active = v
	st.Journal.Step = StepStarted
	if err := saveState(ctx, m.o.DB, flavor, st); err != nil {
		return err
	}
	return m.gate(ctx, st)
}

// gate waits for the journal's target to become healthy, then commits the
// switch or rolls it back.
func (m *Manager) gate(ctx context.Context, st State) error {
	j := st.Journal
	if err := m.waitHealthy(ctx, j.To); err != nil {
		if ctx.Err() != nil {
			// Cancelled, not failed: leave the journal for Recover.
			return fmt.Errorf("%s to %s interrupted: %w", j.Op, j.To, ctx.Err())
		}
		return m.rollBack(ctx, st, err.Error())
	}
	if j.From != "" && j.From != j.To {
		st.Previous = j.From
	}
	st.Active = j.To
	delete(st.Failed, j.To)
	st.Journal = nil
	if err := saveState(ctx, m.o.DB, m.o.Flavor.Name(), st); err != nil {
		return err
	}
	kind := j.Op + "-succeeded"
	if j.Op == "install" {
		kind = "installed"
	}
	m.emit(kind, j.From, j.To, "")
	return nil
}

// rollBack returns to the journal's From version after To failed, and
// remembers To as failed.
func (m *Manager) rollBack(ctx context.Context, st State, reason string) error {
	j := st.Journal
	flavor := m.o.Flavor.Name()
	j.Step, j.Reason = StepRollingBack, reason
	st.Failed[j.To] = Failure{Reason: reason, At: time.Now().UTC()}
	if err := saveState(ctx, m.o.DB, flavor, st); err != nil {
		return err
	}
	m.log.Error("engine version failed; rolling back", "version", j.To, "back_to", orNone(j.From), "reason", reason)
	if j.From == "" {
		if err := m.o.Runner.Stop(ctx); err != nil {
			return fmt.Errorf("%s %s failed (%s) and stopping it failed: %w", j.Op, j.To, reason, err)
		}
		st.Active, st.Journal = "", nil
		if err := saveState(ctx, m.o.DB, flavor, st); err != nil {
			return err
		}
		m.emit("failed", "", j.To, reason)
		return fmt.Errorf("%s %s: %s: %w", j.Op, j.To, reason, ErrUnhealthy)
	}
	if err := m.restart(ctx, j.From); err != nil {
		return fmt.Errorf("%s to %s failed (%s) and restarting %s failed: %w", j.Op, j.To, reason, j.From, err)
	}
	st.Active = j.From
	if err := saveState(ctx, m.o.DB, flavor, st); err != nil {
		return err
	}
	herr := m.waitHealthy(ctx, j.From)
	st.Journal = nil
	if err := saveState(ctx, m.o.DB, flavor, st); err != nil {
		return err
	}
	m.emit("rolled-back", j.To, j.From, reason)
	if herr != nil {
		return fmt.Errorf("%s to %s failed (%s); rolled back to %s, which is not healthy either: %w", j.Op, j.To, reason, j.From, herr)
	}
	return fmt.Errorf("%s to %s failed, rolled back to %s: %s: %w", j.Op, j.To, j.From, reason, ErrUnhealthy)
}

// restart stops whatever engine runs and starts version v.
func (m *Manager) restart(ctx context.Context, v string) error {
	if err := m.o.Runner.Stop(ctx); err != nil {
		return err
	}
	if err := m.writeConfig(); err != nil {
		return err
	}
	return m.start(ctx, v)
}

// start starts version v, noting where its log output begins.
func (m *Manager) start(ctx context.Context, v string) error {
	d := m.daemon(v)
	m.logFrom = 0
	if fi, err := os.Stat(d.LogFile); err == nil && d.LogFile != "" {
		m.logFrom = fi.Size()
	}
	if err := m.o.Runner.Start(ctx, d); err != nil {
		return err
	}
	m.recordStarted(ctx)
	return nil
}

// ensureRunning starts the active version when nothing runs, or when another
// version runs than the one recorded.
func (m *Manager) ensureRunning(ctx context.Context, st State) error {
	if st.Active == "" {
		return nil
	}
	rs, err := m.o.Runner.State(ctx)
	if err != nil {
		return err
	}
	if rs.Running && m.versionOf(rs.Exe) == st.Active {
		return nil
	}
	msg := "engine was not running"
	if rs.Running {
		msg = "engine ran " + rs.Exe + " instead of the active version"
	}
	if err := m.restart(ctx, st.Active); err != nil {
		return fmt.Errorf("restart engine %s: %w", st.Active, err)
	}
	m.emit("restarted", "", st.Active, msg)
	return nil
}

// versionOf maps a daemon executable back to its version folder.
func (m *Manager) versionOf(exe string) string {
	rel, err := filepath.Rel(m.dir, exe)
	if err != nil || strings.HasPrefix(rel, "..") {
		return ""
	}
	v, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	return v
}

// waitHealthy polls the engine until its API answers and the daemon that
// runs is version v, or the health timeout passes. A daemon that exits is
// reported at once with the end of its log.
func (m *Manager) waitHealthy(ctx context.Context, v string) error {
	ctx, cancel := context.WithTimeout(ctx, m.o.HealthTimeout)
	defer cancel()
	start := time.Now()
	var lastErr error
	gone := 0
	for {
		rs, err := m.o.Runner.State(ctx)
		switch {
		case err != nil:
			lastErr = err
		case !rs.Running:
			gone++
			lastErr = fmt.Errorf("engine daemon is not running %s", rs.Detail)
			// A daemon that is gone three polls in a row has exited, not
			// just begun: fail now rather than at the timeout.
			if gone >= 3 {
				return fmt.Errorf("%s exited: %w%s", v, ErrUnhealthy, m.logTail(v))
			}
		case m.versionOf(rs.Exe) != v:
			gone = 0
			lastErr = fmt.Errorf("engine runs %s, not %s", rs.Exe, v)
		default:
			gone = 0
			api, err := m.o.Flavor.Probe(ctx, m.o.Config.Endpoint)
			if err == nil {
				m.log.Info("engine healthy", "version", v, "api_version", api.APIVersion, "engine_version", api.Version, "after", time.Since(start).Round(time.Millisecond))
				return nil
			}
			lastErr = err
		}
		m.o.Progress("wait for "+v+" to be healthy", int64(time.Since(start)/time.Second), int64(m.o.HealthTimeout/time.Second))
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s not healthy within %s (last: %v): %w%s", v, m.o.HealthTimeout, lastErr, ErrUnhealthy, m.logTail(v))
			}
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// logTail returns the last lines of the daemon's log, for error messages.
func (m *Manager) logTail(v string) string {
	lf := m.daemon(v).LogFile
	if lf == "" {
		return ""
	}
	b, err := os.ReadFile(lf)
	if err != nil {
		return ""
	}
	if m.logFrom <= int64(len(b)) {
		b = b[m.logFrom:]
	}
	if len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "; daemon log (" + lf + "):\n  " + strings.Join(lines, "\n  ")
}

// writeConfig renders the engine's configuration and writes each file that
// differs, atomically. It reports through the log which operator settings
// Berth's own keys replaced.
func (m *Manager) writeConfig() error {
	_, err := m.syncConfig()
	return err
}

func (m *Manager) syncConfig() (bool, error) {
	in := m.o.Config
	in.ConfDir = m.confDir()
	files, err := m.o.Flavor.RenderConfig(in)
	if err != nil {
		return false, fmt.Errorf("render %s config: %w", m.o.Flavor.Name(), err)
	}
	changed := false
	for _, f := range files {
		if len(f.Overridden) > 0 {
			m.log.Warn("engine.settings keys are owned by berth and were replaced", "keys", f.Overridden, "file", f.Path)
		}
		c, err := atomicfile.WriteIfChanged(filepath.Join(m.confDir(), f.Path), f.Data, 0o644)
		if err != nil {
			return false, err
		}
		if c && f.Live {
			m.log.Debug("engine configuration file written; the engine reads it on use, so no restart", "file", f.Path)
			continue
		}
		changed = changed || c
	}
	return changed, nil
}

// fetch makes version v's folder exist, downloading and unpacking the signed
// package when it does not.
func (m *Manager) fetch(ctx context.Context, v string) error {
	if m.isInstalled(v) {
		return nil
	}
	if m.o.Releases == nil {
		return fmt.Errorf("install %s %s: %w and engine.releases.url is not set, so it cannot be downloaded", m.o.Flavor.Name(), v, ErrNotInstalled)
	}
	t, err := m.find(ctx, v)
	if err != nil {
		return err
	}
	dl := filepath.Join(m.dir, "downloads", filepath.Base(t.Path))
	if err := os.MkdirAll(filepath.Dir(dl), 0o755); err != nil {
		return fmt.Errorf("install %s: %w", v, err)
	}
	m.log.Info("downloading engine package", "version", v, "target", t.Path, "bytes", t.Length)
	if err := m.o.Releases.Download(ctx, t, dl, func(done, total int64) { m.o.Progress("download "+v, done, total) }); err != nil {
		return fmt.Errorf("install %s %s: %w", m.o.Flavor.Name(), v, err)
	}
	m.o.Progress("unpack "+v, 0, -1)
	if err := archive.Extract(ctx, dl, m.versionDir(v), archive.Limits{}); err != nil {
		// The package is signed but cannot be unpacked safely: keeping it
		// would only make the next try fail the same way.
		_ = os.Remove(dl)
		return fmt.Errorf("install %s %s: %w", m.o.Flavor.Name(), v, err)
	}
	if !m.isInstalled(v) {
		_ = os.RemoveAll(m.versionDir(v))
		_ = os.Remove(dl)
		return fmt.Errorf("install %s %s: the package has no %s; is it in the layout of the engine's static release archive?", m.o.Flavor.Name(), v, m.daemon(v).Path)
	}
	if err := os.Remove(dl); err != nil {
		m.log.Warn("could not remove the downloaded package", "path", dl, "err", err)
	}
	m.log.Info("engine package installed", "version", v, "dir", m.versionDir(v))
	return nil
}

// find refreshes the signed metadata and looks up the package of version v
// ("" for the channel's newest).
func (m *Manager) find(ctx context.Context, v string) (release.Target, error) {
	if err := m.o.Releases.Refresh(ctx); err != nil {
		return release.Target{}, fmt.Errorf("refresh release metadata: %w", err)
	}
	t, err := m.o.Releases.Find(release.Query{Kind: "engine", Flavor: m.o.Flavor.Name(), Version: v, Channel: m.o.Channel, OS: m.o.OS, Arch: m.o.Arch})
	if err != nil {
		return release.Target{}, fmt.Errorf("find %s %s for %s/%s: %w", m.o.Flavor.Name(), orNewest(v), m.o.OS, m.o.Arch, err)
	}
	return t, nil
}

// Converge is one round of the daemon's watch: finish any interrupted
// change, move to the desired version unless it failed before, keep the
// engine running and its configuration as Berth wrote it. It does nothing
// when another process holds the engine lock.
func (m *Manager) Converge(ctx context.Context, desired string) error {
	if !m.o.Managed {
		return nil
	}
	unlock, ok, err := m.tryLock()
	if err != nil || !ok {
		return err
	}
	defer unlock()
	if err := m.recover(ctx); err != nil {
		return err
	}
	st, err := m.loadState(ctx)
	if err != nil {
		return err
	}
	// A failure is forgotten once the desired version moves on, so that
	// asking for the version again later retries it.
	forgot := false
	for v := range st.Failed {
		if v != desired {
			delete(st.Failed, v)
			forgot = true
		}
	}
	if forgot {
		if err := saveState(ctx, m.o.DB, m.o.Flavor.Name(), st); err != nil {
			return err
		}
	}
	if desired != "" && desired != st.Active {
		if f, failed := st.Failed[desired]; failed {
			m.log.Debug("desired engine version failed before; not retrying until the desired version changes", "version", desired, "reason", f.Reason)
		} else if err := m.upgradeLocked(ctx, desired); err != nil {
			return err
		}
		if st, err = m.loadState(ctx); err != nil {
			return err
		}
	}
	return m.applyConfigLocked(ctx, st)
}

func orNone(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

func orNewest(v string) string {
	if v == "" {
		return "(newest)"
	}
	return v
}

package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// wiringBucket keeps, per flavor, the digest of the configuration the
// engine daemon was last started with. The files on disk say what Berth
// wrote; only this says whether the daemon that runs has read them: an
// agent killed between writing daemon.json and restarting the engine leaves
// files that match and an engine that still runs without the cache mirror.
const wiringBucket = "engine-config"

// Wiring is how the engine's configuration stands against what Berth
// renders: the files (the cache as registry mirror, engine.settings) and
// whether the running engine was started with them.
type Wiring struct {
	// Mirror is the cache address Berth writes as the engine's mirror, ""
	// when the cache is disabled.
	Mirror string `json:"mirror,omitempty"`
	// Drift lists the configuration files that differ from what Berth
	// renders (missing, or edited by hand).
	Drift []string `json:"drift,omitempty"`
	// Stale says the running engine was started with another configuration
	// than the one Berth renders now: it needs a restart to read it.
	Stale bool `json:"stale,omitempty"`
}

// Wired says the files are as Berth renders them and the engine runs with them.
func (w Wiring) Wired() bool { return len(w.Drift) == 0 && !w.Stale }

// rendered renders the flavor's files and the digest of those the engine
// reads only at start (live files are read on every use).
func (m *Manager) rendered() ([]ConfigFile, string, error) {
	in := m.o.Config
	in.ConfDir = m.confDir()
	files, err := m.o.Flavor.RenderConfig(in)
	if err != nil {
		return nil, "", fmt.Errorf("render %s config: %w", m.o.Flavor.Name(), err)
	}
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b ConfigFile) int { return strings.Compare(a.Path, b.Path) })
	h := sha256.New()
	for _, f := range files {
		if f.Live {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f.Path, len(f.Data))
		h.Write(f.Data)
	}
	return files, hex.EncodeToString(h.Sum(nil)), nil
}

// Wiring compares the engine's configuration files with what Berth renders
// and the running engine's configuration with them. It changes nothing.
func (m *Manager) Wiring(ctx context.Context) (Wiring, error) {
	w := Wiring{Mirror: m.o.Config.Mirror}
	files, digest, err := m.rendered()
	if err != nil {
		return w, err
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(m.confDir(), f.Path))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return w, fmt.Errorf("read engine config %s: %w", f.Path, err)
		}
		if err != nil || !bytes.Equal(got, f.Data) {
			w.Drift = append(w.Drift, f.Path)
		}
	}
	w.Stale, err = m.stale(ctx, digest)
	return w, err
}

// stale says a running engine was started with a configuration other than
// digest. An engine started before Berth recorded digests counts as
// current: an agent update must not restart every engine of a fleet.
func (m *Manager) stale(ctx context.Context, digest string) (bool, error) {
	var started string
	found, err := m.o.DB.Get(ctx, wiringBucket, m.o.Flavor.Name(), &started)
	if err != nil || !found {
		return false, err
	}
	if started == digest {
		return false, nil
	}
	rs, err := m.o.Runner.State(ctx)
	if err != nil {
		return false, err
	}
	return rs.Running, nil
}

// recordStarted notes that the engine was just started with the
// configuration Berth renders now. A failure to note it costs one restart
// more later, never a missed one, so it is logged, not returned.
func (m *Manager) recordStarted(ctx context.Context) {
	_, digest, err := m.rendered()
	if err == nil {
		err = m.o.DB.Put(ctx, wiringBucket, m.o.Flavor.Name(), digest)
	}
	if err != nil {
		m.log.Warn("could not record the configuration the engine started with; it may be restarted once more than needed", "err", err)
	}
}

// ApplyWiring writes the engine's configuration as Berth renders it and
// restarts the active engine when it does not run with it, then waits for
// it to be healthy. It waits for the engine lock.
func (m *Manager) ApplyWiring(ctx context.Context) error {
	unlock, err := m.begin(ctx, "")
	if err != nil {
		return err
	}
	defer unlock()
	st, err := m.loadState(ctx)
	if err != nil {
		return err
	}
	return m.applyConfigLocked(ctx, st)
}

// applyConfigLocked writes the configuration and restarts the active
// engine when a file changed or the engine runs with an older one; else it
// makes sure the active engine runs. The caller holds the lock.
func (m *Manager) applyConfigLocked(ctx context.Context, st State) error {
	changed, err := m.syncConfig()
	if err != nil {
		return err
	}
	_, digest, err := m.rendered()
	if err != nil {
		return err
	}
	stale, err := m.stale(ctx, digest)
	if err != nil {
		return err
	}
	if (changed || stale) && st.Active != "" {
		msg := "engine configuration differed from what berth writes; rewritten and engine restarted"
		if !changed {
			msg = "engine ran with an older configuration than the one written; restarted to read it"
		}
		m.emit("config-repaired", "", st.Active, msg)
		if err := m.restart(ctx, st.Active); err != nil {
			return fmt.Errorf("restart engine after repairing its config: %w", err)
		}
		return m.waitHealthy(ctx, st.Active)
	}
	return m.ensureRunning(ctx, st)
}

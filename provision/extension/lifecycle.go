package extension

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/internal/paths"
)

// loadedConfig is the agent config enable wrote, with the state folder it
// names; ok is false when there is none (enable never succeeded).
func (h *Handler) loadedConfig() (cfg config.Config, stateDir string, ok bool) {
	cfg, err := config.Load(h.ConfigPath)
	if err != nil {
		return config.Config{}, paths.StateDir(), false
	}
	return cfg, cfg.StateDir(), true
}

// Disable stops the agent and removes its service definition, so that it
// does not start again at boot while the extension is disabled (the guest
// agent runs enable again to undo it). The engine and its containers keep
// running: they do not depend on the agent.
func (h *Handler) Disable(ctx context.Context) error {
	_, stateDir, _ := h.loadedConfig()
	s := h.Services(h.agentBinary(stateDir), h.ConfigPath, stateDir)
	err := stopAgent(ctx, s)
	if err == nil {
		if uerr := s.Uninstall(ctx); uerr != nil && !errors.Is(uerr, ErrNoServiceManager) {
			err = failf(CodeService, "remove the berth-agent service definition: %w", uerr)
		}
	}
	seq, serr := h.sequence()
	if serr != nil {
		h.Log.Warn("extension disable: no sequence number to report on", "err", serr)
		return err
	}
	if err != nil {
		h.writeStatus(seq, NewStatus(OpDisable, StateError, CodeOf(err), "Berth disable failed: "+err.Error()))
		return err
	}
	h.writeStatus(seq, NewStatus(OpDisable, StateSuccess, 0, "the Berth agent is stopped and does not start at boot; the engine and its containers keep running"))
	h.Log.Info("extension disable: agent stopped")
	return nil
}

// Uninstall removes the agent service, its config, its secrets and Berth's
// state, keeping the engine's data root. When the new version's update has
// marked this version as the one being updated away from, it keeps
// everything: the new version goes on with the same service and state.
func (h *Handler) Uninstall(ctx context.Context) error {
	cfg, stateDir, loaded := h.loadedConfig()
	var m updateMarker
	if ok, _ := readJSON(filepath.Join(stateDir, updateFile), &m); ok && keptForUpdate(m, h.Version, h.Now()) {
		h.Log.Info("extension uninstall: part of an update; the agent, its config and state stay", "from", m.From, "to", m.To)
		return h.Seq.Clear()
	}
	s := h.Services(h.agentBinary(stateDir), h.ConfigPath, stateDir)
	var errs []error
	if err := stopAgent(ctx, s); err != nil {
		errs = append(errs, err)
	}
	if err := s.Uninstall(ctx); err != nil && !errors.Is(err, ErrNoServiceManager) {
		errs = append(errs, fmt.Errorf("remove the berth-agent service: %w", err))
	}
	if _, ours, _ := ReadHandlerState(stateDir); ours {
		if loaded {
			if err := os.Remove(h.ConfigPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove the agent config: %w", err))
			}
		}
		if err := removeState(stateDir, keptOnUninstall(cfg)); err != nil {
			errs = append(errs, fmt.Errorf("remove Berth's state in %s: %w", stateDir, err))
		}
	}
	if err := h.Seq.Clear(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fail(CodeHostWrite, err)
	}
	h.Log.Info("extension uninstall: agent, config, secrets and state removed; the engine's data kept", "stateDir", stateDir)
	return nil
}

// keptOnUninstall is what uninstall never removes: the engine's data root.
func keptOnUninstall(cfg config.Config) []string {
	var keep []string
	if cfg.Engine.DataRoot != "" {
		keep = append(keep, cfg.Engine.DataRoot)
	}
	// Every path the engine settings point the engine at (docker's
	// data-root, exec-root, pidfile and unix sockets in hosts, containerd's
	// root and state) is the engine's too, in use by the engine that keeps
	// running: an absolute path among the settings' values, or in a list
	// of them, is kept, whatever the flavour calls it.
	// The engine's API socket, when it is a file: the engine keeps serving
	// on it after the agent is gone.
	if p := strings.TrimPrefix(cfg.Engine.Endpoint, "unix://"); filepath.IsAbs(p) {
		keep = append(keep, filepath.Clean(p))
	}
	for _, v := range cfg.Engine.Settings {
		vs := []any{v}
		if list, ok := v.([]any); ok {
			vs = list
		}
		for _, v := range vs {
			if p, ok := v.(string); ok {
				if p = strings.TrimPrefix(p, "unix://"); filepath.IsAbs(p) {
					keep = append(keep, filepath.Clean(p))
				}
			}
		}
	}
	return keep
}

// Update runs in the new version, after the old one was disabled and
// before it is uninstalled (anchors §1.2): it takes over the applied
// sequence number and marks the update so that the old version's
// uninstall keeps the service, config and state. The new version's
// enable then runs the new binary.
func (h *Handler) Update(ctx context.Context) error {
	from := h.Getenv(EnvUpdatingFrom)
	if err := h.Seq.CopyFrom(from); err != nil {
		h.Log.Warn("extension update: the old version's sequence number was not taken over; enable applies the settings again", "err", err)
	}
	_, stateDir, _ := h.loadedConfig()
	if _, ours, _ := ReadHandlerState(stateDir); ours && validVersion(from) {
		if _, err := writeJSON(filepath.Join(stateDir, updateFile), updateMarker{From: from, To: h.Version, At: h.Now().UTC()}, 0o644); err != nil {
			return err
		}
	}
	h.Log.Info("extension update", "from", from, "to", h.Version)
	return nil
}

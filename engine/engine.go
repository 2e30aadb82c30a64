// Package engine installs, configures, runs, upgrades and rolls back the
// host's container engine from signed release packages.
//
// Every installed version lives in its own folder,
// <stateDir>/engines/<flavor>/<version>/, and is never changed in place. The
// engine runs as a service of the platform (systemd, Windows SCM) or, where
// there is none, as a detached process the agent supervises. What differs
// between Docker Engine and containerd is behind Flavor; how the platform
// runs a daemon is behind Runner.
//
// Every step that changes which version runs is written to a journal in
// agent.db before it is taken, so that an agent killed at any moment finishes
// or undoes the step when it starts again (Manager.Recover): the host always
// ends with a working engine.
package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
)

// Flavor is what differs between engines: how the daemon is started, the
// configuration files it reads, and how its API answers.
type Flavor interface {
	// Name is the flavor as config and release metadata spell it ("docker").
	Name() string
	// Daemon describes the engine process of the version unpacked in dir,
	// reading the configuration rendered into confDir.
	Daemon(dir, confDir string) Daemon
	// RenderConfig returns the engine's configuration files for in, with
	// paths relative to confDir.
	RenderConfig(in ConfigInput) ([]ConfigFile, error)
	// Probe asks the engine's API whether it is up and which version it is.
	Probe(ctx context.Context, endpoint string) (APIStatus, error)
	// Puller pulls images into the engine described by o.
	Puller(o PullOptions) (Puller, error)
}

// Runner starts and stops an engine daemon as a service of the platform.
type Runner interface {
	// Kind names the mechanism: "systemd", "scm" or "supervised".
	Kind() string
	// Start runs d until Stop, surviving restarts of the agent.
	Start(ctx context.Context, d Daemon) error
	// Stop stops the engine daemon, whichever version runs; a no-op when none does.
	Stop(ctx context.Context) error
	// State tells whether an engine daemon runs and which executable it is.
	State(ctx context.Context) (RunState, error)
}

// Daemon is an engine process: its executable, arguments and environment.
type Daemon struct {
	// Name is the service name ("docker").
	Name string
	Path string
	Args []string
	// Env is added to the agent's environment (PATH first, so that dockerd
	// finds the containerd and runc of its own version).
	Env []string
	// LogFile receives the daemon's output where the platform does not keep it.
	LogFile string
	// PIDFile is the file the daemon records its pid in and refuses to
	// start over while /proc has that pid (dockerd's "pid file found");
	// empty when it keeps none. The supervised runner removes it when it
	// names a daemon that has exited but is not reaped yet.
	PIDFile string
}

// PIDFiler is a Flavor whose daemon keeps a pid file, where in says.
type PIDFiler interface {
	PIDFile(in ConfigInput) string
}

// RunState is what a Runner sees of the engine daemon.
type RunState struct {
	Running bool
	PID     int
	// Exe is the running daemon's executable, which names its version folder.
	Exe string
	// Detail is a short human explanation (for example an exit status).
	Detail string
}

// ConfigInput is what Berth puts into the engine's configuration.
type ConfigInput struct {
	// Endpoint is where the engine API listens (unix://…, npipe://…).
	Endpoint string
	// DataRoot is the engine's data folder; empty keeps the engine's default.
	DataRoot string
	// Mirror is the image cache's address (host:port); empty when disabled.
	Mirror string
	// Upstreams are the registries of cache.upstreams, each mapped to its
	// endpoint ("" for the registry itself). Flavors that configure a
	// mirror per registry (containerd's certs.d) write one for each.
	Upstreams map[string]string
	// ConfDir is the absolute folder the rendered files are written to,
	// for flavors whose config names its own files (containerd's
	// registry config_path). The Manager sets it.
	ConfDir string
	// Settings are the operator's engine.settings, merged under Berth's keys.
	Settings map[string]any
	// LiveRestore keeps containers running while the daemon restarts.
	LiveRestore bool
}

// ConfigFile is one rendered configuration file.
type ConfigFile struct {
	Path string // relative to the flavor's config folder
	Data []byte
	// Overridden lists engine.settings keys that Berth's own keys replaced.
	Overridden []string
	// Live files are read by the engine on every use (containerd's
	// hosts.toml), so rewriting one needs no restart of the engine.
	Live bool
}

// APIStatus is the engine API's answer to a probe.
type APIStatus struct {
	Version    string `json:"version"`
	APIVersion string `json:"apiVersion"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// Sentinel errors, for errors.Is.
var (
	// ErrNotInstalled: the version has no verified folder on this host.
	ErrNotInstalled = errors.New("engine version not installed")
	// ErrUnhealthy: the engine did not become healthy in time.
	ErrUnhealthy = errors.New("engine not healthy")
	// ErrNoPrevious: there is no earlier version to roll back to.
	ErrNoPrevious = errors.New("no previous engine version to roll back to")
	// ErrUnmanaged: engine.managed is false, so the agent only watches.
	ErrUnmanaged = errors.New("engine is not managed by berth (engine.managed: false)")
	// ErrRebootRequired: a Windows feature the engine needs was enabled and
	// takes effect after a reboot. Reboot the VM (provision does it when
	// provision.allowReboot is true) and run the command again.
	ErrRebootRequired = errors.New("a reboot is required before the engine can run")
)

// HostCheck is a platform check besides the engine API (HCS and HNS on
// Windows).
type HostCheck struct {
	Name    string `json:"name"`
	Status  string `json:"status"` // ok | warn | fail
	Message string `json:"message,omitempty"`
}

// Versions start with a digit, so that no version folder can clash with the
// other names in a flavor's folder (config, downloads, .lock).
var versionRE = regexp.MustCompile(`^[0-9][0-9A-Za-z._+-]{0,63}$`)

// CheckVersion refuses version strings that cannot safely name a folder.
func CheckVersion(v string) error {
	if !versionRE.MatchString(v) || v == "." || v == ".." {
		return fmt.Errorf("engine version %q is not valid: start with a digit and use letters, digits and . _ + - (for example 24.0.7)", v)
	}
	return nil
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Puller pulls images into the engine, in order, through the image cache
// when one is given, and stops at the first failure. Each flavor has its own:
// dockerd pulls through its API, containerd through the ctr of its package.
type Puller interface {
	// Pull returns the images' names as the engine knows them (containerd
	// fully qualified: docker.io/library/busybox:latest).
	Pull(ctx context.Context, images ...string) ([]string, error)
	// Target says, besides the image names, where the images land (for
	// containerd "containerd namespace k8s.io"), "" when nothing else
	// decides it: a pull remembered as done is done again when it changes.
	Target() string
}

// PullOptions is what a flavor's puller needs of the host. Manager.Puller
// fills everything but the caller's choices (CacheAddr, Namespace, Progress,
// Logger).
type PullOptions struct {
	// Endpoint is the engine API.
	Endpoint string
	// CacheAddr is the image cache's host:port; "" pulls straight from the
	// upstream registries.
	CacheAddr string
	// ConfDir is the flavor's config folder, as rendered by RenderConfig.
	ConfDir string
	// PackageDir is the folder of the engine version that runs (the active
	// one when none runs yet); "" for an engine Berth does not manage.
	PackageDir string
	// Settings are engine.settings (containerd's namespace follows them).
	Settings map[string]any
	// Namespace is where images go for a flavor that has namespaces; ""
	// for its default. A flavor without namespaces refuses one with
	// ErrNotSupported.
	Namespace string
	// Progress, when set (a terminal), shows the pull's progress as it
	// goes; when nil, progress is logged as lines.
	Progress io.Writer
	Logger   *slog.Logger
}

// ErrNotSupported: the flavor has no such option (a usage error).
var ErrNotSupported = errors.New("not supported by this engine flavor")

// Puller returns the flavor's puller for the engine as it is now. The engine
// API must answer: a pull into an engine that is down cannot succeed.
func (m *Manager) Puller(ctx context.Context, o PullOptions) (Puller, error) {
	st, err := m.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("pull: read the engine's state: %w", err)
	}
	o.Endpoint, o.ConfDir, o.Settings = m.o.Config.Endpoint, m.confDir(), m.o.Config.Settings
	if m.o.Managed {
		// The version that runs is the one whose tools talk to it; during
		// an upgrade's health wait that is not yet the active one.
		v := st.RunningVersion
		if v == "" {
			v = st.Active
		}
		if v != "" {
			o.PackageDir = m.versionDir(v)
		}
	}
	if o.Logger == nil {
		o.Logger = m.log
	}
	// The flavor checks its options (a namespace dockerd has not) before
	// the engine's answer is asked for: a usage error stays one.
	p, err := m.o.Flavor.Puller(o)
	if err != nil {
		return nil, err
	}
	if st.API == nil {
		return nil, fmt.Errorf("pull: the %s API at %s does not answer (%s); start the engine or check `berth-agent engine status`", st.Flavor, st.Endpoint, st.APIError)
	}
	return p, nil
}

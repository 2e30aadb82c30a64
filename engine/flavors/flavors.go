// Package flavors is the closed set of engine flavors: the one place that
// maps engine.flavor's name to its package. Config validation, the agent's
// wiring and anything else that needs a flavor by name come here, so no
// "docker"/"containerd" branch lives outside engine/ (internal/repocheck
// checks it). A third flavor is a package beside docker/ and containerd/
// and one line here.
package flavors

import (
	"fmt"
	"strings"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/engine/containerd"
	"github.com/berthhq/berth/engine/docker"
)

// Names are the flavors engine.flavor accepts, the default first.
var Names = []string{"docker", "containerd"}

// New returns the flavor called name; logDir receives the daemon's output
// when the agent supervises it.
func New(name, logDir string) (engine.Flavor, error) {
	switch name {
	case "docker":
		return &docker.Flavor{LogDir: logDir}, nil
	case "containerd":
		return &containerd.Flavor{LogDir: logDir}, nil
	}
	return nil, fmt.Errorf("engine.flavor %q is not supported; use %s", name, strings.Join(Names, " or "))
}

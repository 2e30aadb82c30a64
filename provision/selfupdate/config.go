package selfupdate

import (
	"time"

	"github.com/berthhq/berth/internal/units"
)

// Config is the update block of agent.yaml: how long a self-updated agent
// has to prove itself.
type Config struct {
	// HealthTimeout bounds how long a new agent version may take to answer
	// /healthz with 200 and get its reports acknowledged by control (when
	// control.url is set); past it the version is blacklisted.
	HealthTimeout units.Duration `yaml:"healthTimeout" json:"healthTimeout"`
}

// DefaultHealthTimeout is update.healthTimeout when agent.yaml leaves it out.
const DefaultHealthTimeout = 10 * time.Minute

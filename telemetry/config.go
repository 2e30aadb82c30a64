package telemetry

// HealthConfig is the health block of agent.yaml: the local health
// endpoint.
type HealthConfig struct {
	// Listen is the host:port of /healthz and /metrics.
	Listen string `yaml:"listen" json:"listen"`
}

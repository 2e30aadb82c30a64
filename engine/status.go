package engine

import (
	"context"
)

// Status is what `berth-agent engine status` shows.
type Status struct {
	Flavor         string             `json:"flavor"`
	Managed        bool               `json:"managed"`
	Runner         string             `json:"runner"`
	Endpoint       string             `json:"endpoint"`
	Active         string             `json:"active,omitempty"`
	Previous       string             `json:"previous,omitempty"`
	Installed      []string           `json:"installed"`
	Running        bool               `json:"running"`
	PID            int                `json:"pid,omitempty"`
	RunningVersion string             `json:"runningVersion,omitempty"`
	Healthy        bool               `json:"healthy"`
	API            *APIStatus         `json:"api,omitempty"`
	APIError       string             `json:"apiError,omitempty"`
	Failed         map[string]Failure `json:"failed,omitempty"`
	Journal        *Journal           `json:"journal,omitempty"`
	// Host holds the platform's checks (HCS and HNS on Windows).
	Host []HostCheck `json:"host,omitempty"`
}

// Status reads the recorded state and asks the runner and the engine API how
// things are now. It changes nothing.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	s := Status{Flavor: m.o.Flavor.Name(), Managed: m.o.Managed, Runner: m.o.Runner.Kind(), Endpoint: m.o.Config.Endpoint}
	if m.o.Managed {
		st, err := m.loadState(ctx)
		if err != nil {
			return s, err
		}
		s.Active, s.Previous, s.Failed, s.Journal = st.Active, st.Previous, st.Failed, st.Journal
		if s.Installed, err = m.Installed(); err != nil {
			return s, err
		}
		rs, err := m.o.Runner.State(ctx)
		if err != nil {
			return s, err
		}
		s.Running, s.PID = rs.Running, rs.PID
		if rs.Running {
			s.RunningVersion = m.versionOf(rs.Exe)
		}
	}
	api, err := m.o.Flavor.Probe(ctx, m.o.Config.Endpoint)
	if err != nil {
		s.APIError = err.Error()
	} else {
		s.API = &api
		s.Healthy = !m.o.Managed || (s.Running && s.RunningVersion == s.Active)
		if !m.o.Managed {
			s.Running = true
		}
	}
	s.Host = hostChecks(ctx)
	for _, c := range s.Host {
		if c.Status == "fail" {
			s.Healthy = false
		}
	}
	return s, nil
}

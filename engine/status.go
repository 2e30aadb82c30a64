package engine

import (
	"context"
	"strconv"
	"strings"
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
}

// Status reads the recorded state and asks the runner and the engine API how
// things are now. It changes nothing.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	s := Status{Flavor: m.o.Flavor.Name(), Managed: m.o.Managed, Runner: m.o.Runner.Kind(), Endpoint: m.o.Config.Endpoint}
	if m.o.Managed {
		st, err := loadState(ctx, m.o.DB, m.o.Flavor.Name())
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
	return s, nil
}

// CompareVersions orders version strings by their dotted numeric parts
// ("20.10.9" < "20.10.24"), a part with a suffix after the same number
// ("24.0.0-rc1" < "24.0.0"), then as text. It suits sorting engine versions.
func CompareVersions(a, b string) int {
	as, bs := splitVersion(a), splitVersion(b)
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := comparePart(as[i], bs[i]); c != 0 {
			return c
		}
	}
	// One is a prefix of the other: a further number makes a later version
	// (24.0.0.1 > 24.0.0), a further word an earlier one (24.0.0-rc1 < 24.0.0).
	switch {
	case len(as) < len(bs):
		return -extraOrder(bs[len(as)])
	case len(as) > len(bs):
		return extraOrder(as[len(bs)])
	}
	return strings.Compare(a, b)
}

func splitVersion(v string) []string {
	v = strings.TrimPrefix(v, "v")
	v, _, _ = strings.Cut(v, "+") // build metadata does not order
	return strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == '-' })
}

func extraOrder(part string) int {
	if _, err := strconv.ParseUint(part, 10, 64); err == nil {
		return 1
	}
	return -1
}

func comparePart(a, b string) int {
	an, aerr := strconv.ParseUint(a, 10, 64)
	bn, berr := strconv.ParseUint(b, 10, 64)
	switch {
	case aerr == nil && berr == nil:
		switch {
		case an < bn:
			return -1
		case an > bn:
			return 1
		}
		return 0
	case aerr == nil:
		return 1 // a number sorts after a pre-release word
	case berr == nil:
		return -1
	}
	return strings.Compare(a, b)
}

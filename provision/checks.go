package provision

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/berthhq/berth/telemetry"
	"github.com/berthhq/berth/telemetry/report"
)

// Checks are the host's health checks of SPEC: engine API, engine service,
// engine version against the desired one, data-root disk space, the cache
// listener and each storage tier, the control endpoint, and on Windows HCS
// and HNS.
func (h *Host) Checks() []telemetry.CheckFunc {
	checks := []telemetry.CheckFunc{h.checkEngine, h.checkDisk}
	if h.Cache != nil {
		checks = append(checks, h.checkCacheListener)
		for _, t := range h.Cache.Blobs {
			checks = append(checks, func(ctx context.Context) telemetry.Check {
				// The name is one the control endpoint accepts (no
				// spaces, colons or slashes); the message names the tier.
				c := telemetry.Check{Name: cacheTierCheck + report.Name(t.Name()), Status: telemetry.OK, Message: t.Name() + " reachable"}
				if err := t.Health(ctx); err != nil {
					c.Status, c.Message = telemetry.Warn, err.Error()+" (skipped; the disk and the upstream still serve)"
				}
				return c
			})
		}
	}
	checks = append(checks, h.checkControl)
	return checks
}

// checkEngine reports the engine API, the engine service and its version
// against the desired one, from one engine status.
func (h *Host) checkEngine(ctx context.Context) telemetry.Check {
	c := telemetry.Check{Name: "engine", Status: telemetry.OK}
	st, err := h.Engine.Status(ctx)
	switch {
	case err != nil:
		c.Status, c.Message = telemetry.Fail, err.Error()
	case st.API == nil:
		c.Status, c.Message = telemetry.Fail, "engine API does not answer: "+st.APIError
	case st.Managed && !st.Running:
		c.Status, c.Message = telemetry.Fail, "engine service is not running"
	case st.Journal != nil:
		c.Status, c.Message = telemetry.Warn, fmt.Sprintf("%s to %s in progress (step %s)", st.Journal.Op, st.Journal.To, st.Journal.Step)
	case st.Managed && h.Config.Engine.Version != "" && st.Active != h.Config.Engine.Version:
		c.Status, c.Message = telemetry.Warn, fmt.Sprintf("engine runs %s, desired %s", st.Active, h.Config.Engine.Version)
		if _, failed := st.Failed[h.Config.Engine.Version]; failed {
			c.Message += " (the desired version failed its health gate and was rolled back)"
		}
	case !st.Healthy:
		c.Status, c.Message = telemetry.Fail, "engine unhealthy"
	default:
		c.Message = fmt.Sprintf("%s %s answers (API %s)", st.Flavor, st.API.Version, st.API.APIVersion)
		if st.Active != "" {
			c.Message += ", package " + st.Active
		}
	}
	for _, hc := range st.Host {
		if hc.Status == "fail" {
			c.Status, c.Message = telemetry.Fail, hc.Name+": "+hc.Message
		}
	}
	return c
}

// Disk space thresholds of the engine's data root.
const (
	diskWarn = 0.10
	diskFail = 0.02
)

func (h *Host) checkDisk(ctx context.Context) telemetry.Check {
	c := telemetry.Check{Name: "disk", Status: telemetry.OK}
	path := h.Config.Engine.DataRoot
	if path == "" {
		path = h.Config.StateDir()
	}
	free, total, err := telemetry.DiskFree(path)
	if err != nil || total == 0 {
		c.Status, c.Message = telemetry.Warn, fmt.Sprintf("cannot read free space of %s: %v", path, err)
		return c
	}
	share := float64(free) / float64(total)
	c.Message = fmt.Sprintf("%s: %.1f%% free (%d MiB)", path, share*100, free>>20)
	switch {
	case share < diskFail:
		c.Status = telemetry.Fail
	case share < diskWarn:
		c.Status = telemetry.Warn
	}
	return c
}

func (h *Host) checkCacheListener(ctx context.Context) telemetry.Check {
	c := telemetry.Check{Name: "cache-listener", Status: telemetry.OK, Message: h.Cache.Addr() + " answers"}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", h.Cache.Addr())
	if err != nil {
		// Engines fall back to the upstream: degraded, not down.
		c.Status, c.Message = telemetry.Warn, "image cache does not answer: "+err.Error()
		return c
	}
	conn.Close()
	return c
}

func (h *Host) checkControl(ctx context.Context) telemetry.Check {
	c := telemetry.Check{Name: "control", Status: telemetry.OK}
	if h.Config.Control.URL == "" {
		c.Message = "no control endpoint configured"
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u, err := hostPort(h.Config.Control.URL)
	if err == nil {
		var d net.Dialer
		var conn net.Conn
		if conn, err = d.DialContext(ctx, "tcp", u); err == nil {
			conn.Close()
		}
	}
	if err != nil {
		c.Status, c.Message = telemetry.Warn, "control endpoint unreachable: "+err.Error()+" (reports stay queued)"
		return c
	}
	c.Message = h.Config.Control.URL + " reachable"
	if h.Reporter == nil {
		return c
	}
	// Reachable is not enough: a bad token or a refusing endpoint keeps
	// reports queued, which is what an operator needs to see here.
	if st := h.Reporter.Status(); !st.FailingSince.IsZero() {
		c.Status = telemetry.Warn
		c.Message = fmt.Sprintf("reports failing since %s: %s (%d queued)", st.FailingSince.UTC().Format(time.RFC3339), st.LastError, st.Queued)
	} else if !st.LastSent.IsZero() {
		c.Message += fmt.Sprintf("; reports sent %s", st.LastSent.UTC().Format(time.RFC3339))
	}
	return c
}

// hostPort takes host:port out of an http(s) URL.
func hostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	if u.Scheme == "http" {
		return net.JoinHostPort(u.Hostname(), "80"), nil
	}
	return net.JoinHostPort(u.Hostname(), "443"), nil
}

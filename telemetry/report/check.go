package report

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/berthhq/berth/telemetry"
)

// ControlCheck checks that the control endpoint at url is reachable and,
// when r is not nil, that reports reach it: a bad token or a refusing
// endpoint keeps reports queued, which is what an operator needs to see.
func ControlCheck(url string, r *Reporter) telemetry.CheckFunc {
	return func(ctx context.Context) telemetry.Check { return controlCheck(ctx, url, r) }
}

func controlCheck(ctx context.Context, url string, r *Reporter) telemetry.Check {
	c := telemetry.Check{Name: "control", Status: telemetry.OK}
	if url == "" {
		c.Message = "no control endpoint configured"
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u, err := hostPort(url)
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
	c.Message = url + " reachable"
	if r == nil {
		return c
	}
	if st := r.Status(); !st.FailingSince.IsZero() {
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

package selfupdate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/berthhq/berth/telemetry"
	"github.com/berthhq/berth/telemetry/outbox"
)

// HealthURL is the /healthz address of an agent whose health.listen is
// listen; an unspecified host is probed on loopback.
func HealthURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen + "/healthz"
	}
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
}

// gate judges an agent on probation: Healthy and reporting means /healthz
// answers 200 (Healthy or Degraded: a Degraded host is one whose cache
// tier or disk warns, no fault of the agent's) and, when control.url is
// set, control has acknowledged a report queued since the agent started.
type gate struct {
	url    string
	client *http.Client
	outbox *outbox.Outbox // nil without control.url
	from   uint64         // the outbox's next number when the agent started
	// outage: when the agent started, control had left a record
	// unacknowledged for over staleBacklog — it was down before the
	// switch, so a version is not blamed for not reporting (see start).
	outage bool
}

// staleBacklog is how old the oldest queued record must be, when a version
// starts, for control to count as down already: reports are sent every
// report interval (60 s by default) and acknowledged within seconds.
const staleBacklog = 3 * time.Minute

// errNotAcked: /healthz passes, but control has not acknowledged a report
// of the agent's yet.
var errNotAcked = errors.New("healthy, but control has not acknowledged a report since the agent started")

// start notes where the outbox is when an agent starts.
func (g *gate) start(ctx context.Context, now time.Time) {
	if g.outbox == nil {
		return
	}
	st, err := g.outbox.Stats(ctx)
	if err != nil {
		return
	}
	g.from = st.NextSeq
	if st.Records == 0 {
		return
	}
	if oldest, err := g.outbox.Peek(ctx, 1); err == nil && len(oldest) == 1 && now.Sub(oldest[0].Time) > staleBacklog {
		g.outage = true
	}
}

// blames says whether the gate's last failure, at its timeout, is the
// version's: not when it is Healthy locally and only the acknowledgement
// is missing while control was down before the version started.
func (g *gate) blames(err error) bool { return !(g.outage && errors.Is(err, errNotAcked)) }

// maxHealthBody bounds what the gate reads of /healthz.
const maxHealthBody = 1 << 20

// probe returns nil when the agent passes, else what it lacks.
func (g *gate) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url, nil)
	if err != nil {
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("no answer from %s: %w", g.url, err)
	}
	defer resp.Body.Close()
	var h telemetry.Health
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxHealthBody)).Decode(&h); err != nil {
		return fmt.Errorf("%s answered %s with no health in it: %w", g.url, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s%s", g.url, h.State, failing(h.Checks))
	}
	if g.outbox == nil {
		return nil
	}
	return g.reporting(ctx)
}

// reporting checks that control acknowledged a record queued since the
// agent started (its agent.started event, or a heartbeat): the outbox's
// oldest record, if any, is newer than that.
func (g *gate) reporting(ctx context.Context) error {
	st, err := g.outbox.Stats(ctx)
	if err != nil {
		return err
	}
	if st.NextSeq <= g.from {
		return fmt.Errorf("healthy, but no report queued since the agent started")
	}
	if st.Records == 0 {
		return nil
	}
	oldest, err := g.outbox.Peek(ctx, 1)
	if err != nil {
		return err
	}
	if len(oldest) == 1 && oldest[0].Seq <= g.from {
		return fmt.Errorf("%w (%d queued)", errNotAcked, st.Records)
	}
	return nil
}

// failing names the checks that do not pass.
func failing(cs []telemetry.Check) string {
	var b strings.Builder
	for _, c := range cs {
		if c.Status != telemetry.OK {
			fmt.Fprintf(&b, "; %s %s: %s", c.Name, c.Status, c.Message)
		}
	}
	return b.String()
}

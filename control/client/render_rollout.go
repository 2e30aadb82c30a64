package client

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// WriteRollouts writes rollouts as a table: ID, STATE, TARGET, WAVE,
// HOSTS, the hosts by state, and when it was created.
func WriteRollouts(w io.Writer, rs []wire.Rollout, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tTARGET\tWAVE\tHOSTS\tPROGRESS\tCREATED")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.State, Target(r.RolloutSpec), waveText(r), r.Hosts, ByState(r.ByState), Age(r.Created, now))
	}
	return tw.Flush()
}

// WriteRollout writes one rollout: its spec and state, then its waves and
// its history of decisions.
func WriteRollout(w io.Writer, r wire.Rollout, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows := [][2]string{
		{"ID", r.ID},
		{"State", r.State},
		{"Target", Target(r.RolloutSpec)},
		{"Selector", labels(r.Selector)},
		{"Waves", wavesText(r.Waves) + " (bake " + time.Duration(r.Bake).String() + ")"},
		{"Halts", thresholdText(r.RolloutSpec)},
		{"Wave", waveText(r)},
		{"Hosts", fmt.Sprintf("%d: %s", r.Hosts, ByState(r.ByState))},
		{"Created", stamp(r.Created, now) + " by " + orDash(r.CreatedBy)},
		{"Updated", stamp(r.Updated, now)},
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nWAVES (%d)\n", len(r.WaveStatus))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tPERCENT\tHOSTS\tPROGRESS\tSTARTED\tDONE")
	for i, ws := range r.WaveStatus {
		fmt.Fprintf(tw, "%d\t%s%%\t%d\t%s\t%s\t%s\n", i+1, percent(ws.Percent), ws.Hosts, ByState(ws.ByState), timePtr(ws.Started), timePtr(ws.Done))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nHISTORY (%d)\n", len(r.History))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tWHO\tACTION\tWAVE\tSTATE\tREASON")
	for _, d := range r.History {
		wave := "-"
		if d.Wave >= 0 {
			wave = strconv.Itoa(d.Wave + 1)
		}
		state := d.To
		if d.From != "" && d.From != d.To {
			state = d.From + " → " + d.To
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Seq, timeText(d.Time), d.Who, d.Action, wave, orDash(state), orDash(oneLine(d.Reason)))
	}
	return tw.Flush()
}

// ProgressLine is one line of a rollout's progress, for a log or a
// terminal that is not redrawn: "r-1 running, wave 2 of 4 (10%): 4
// healthy, 36 pending".
func ProgressLine(r wire.Rollout) string {
	return fmt.Sprintf("%s %s, wave %s: %s", r.ID, r.State, waveText(r), ByState(r.ByState))
}

// Target is what a rollout moves its hosts to: "engine docker 25.0.1",
// "agent 1.4.0".
func Target(s wire.RolloutSpec) string {
	return strings.Join(strings.Fields(s.Kind+" "+s.Flavor+" "+s.Version), " ")
}

// ByState counts hosts by rollout state, in the order hosts move through
// them, leaving out the states none is in: "4 healthy, 36 pending".
func ByState(m map[string]int) string {
	var parts []string
	for _, st := range wire.HostStates {
		if n := m[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	if len(parts) == 0 {
		return "no hosts"
	}
	return strings.Join(parts, ", ")
}

func waveText(r wire.Rollout) string {
	if len(r.Waves) == 0 || r.Wave < 0 || r.Wave >= len(r.Waves) {
		return "-"
	}
	return fmt.Sprintf("%d of %d (%s%%)", r.Wave+1, len(r.Waves), percent(r.Waves[r.Wave]))
}

func wavesText(ws []float64) string {
	parts := make([]string, len(ws))
	for i, p := range ws {
		parts[i] = percent(p) + "%"
	}
	return strings.Join(parts, ", ")
}

func percent(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) }

func thresholdText(s wire.RolloutSpec) string {
	var parts []string
	if s.MaxFailures != nil {
		parts = append(parts, fmt.Sprintf("more than %d failed", *s.MaxFailures))
	}
	if s.MaxFailurePercent != nil {
		parts = append(parts, fmt.Sprintf("more than %s%% of told hosts failed", percent(*s.MaxFailurePercent)))
	}
	text := "at the first failure"
	if len(parts) > 0 {
		text = "at " + strings.Join(parts, " or ")
	}
	if s.RollbackOnHalt {
		return text + "; then rolls back the hosts it touched"
	}
	return text
}

func timePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return timeText(*t)
}

// WritePin writes a host's pins after a change.
func WritePin(w io.Writer, host string, p wire.Pin) error {
	_, err := fmt.Fprintf(w, "host %s: engine pinned to %s, agent pinned to %s\n", host, orNone(p.Engine), orNone(p.Agent))
	return err
}

func orNone(s string) string {
	if s == "" {
		return "nothing (rollouts decide)"
	}
	return s
}

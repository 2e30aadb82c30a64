package client

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// The text forms of berth-control's operator commands. They are for
// people: columns may change; scripts use --output json.

// WriteHosts writes hosts as an aligned table: ID, STATE, ENGINE, AGENT,
// LAST REPORT (an age from now) and LABELS.
func WriteHosts(w io.Writer, hosts []wire.Host, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tENGINE\tAGENT\tLAST REPORT\tLABELS")
	for _, h := range hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.State, engine(h), orDash(h.AgentVersion), Age(h.LastReport, now), orDash(labels(h.Labels)))
	}
	return tw.Flush()
}

// WriteHost writes one host: its fields, then its checks, its recent
// events and its health history.
func WriteHost(w io.Writer, d wire.HostDetail, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	state := d.State
	if d.ReportedState != "" && d.ReportedState != d.State {
		state += " (last reported " + d.ReportedState + ")"
	}
	eng := engine(d.Host)
	if d.Engine.Flavor != "" || d.Engine.Version != "" {
		eng += fmt.Sprintf(" (active %t, healthy %t)", d.Engine.Active, d.Engine.Healthy)
	}
	rows := [][2]string{
		{"ID", d.ID},
		{"State", state},
		{"Engine", eng},
		{"Agent", orDash(d.AgentVersion)},
		{"OS build", orDash(d.OSBuild)},
		{"Labels", orDash(labels(d.Labels))},
		{"Last report", stamp(d.LastReport, now)},
		{"Last heartbeat", stamp(d.LastHeartbeat, now)},
		{"First seen", stamp(d.FirstSeen, now)},
		{"Interval", orDash(durationText(d.Interval))},
		{"Last seq", fmt.Sprint(d.LastSeq)},
	}
	if d.Dropped.Heartbeats > 0 || d.Dropped.Events > 0 {
		rows = append(rows, [2]string{"Dropped", fmt.Sprintf("%d heartbeats, %d events (the agent's outbox was full)", d.Dropped.Heartbeats, d.Dropped.Events)})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nCHECKS (%d)\n", len(d.Checks))
	if len(d.Checks) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATUS\tAGE\tMESSAGE")
		for _, c := range d.Checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Status, Age(c.Time, now), oneLine(c.Message))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nEVENTS (%d newest)\n", len(d.Events))
	if len(d.Events) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tMESSAGE")
		for _, e := range d.Events {
			msg := oneLine(e.Message)
			if len(e.Fields) > 0 {
				msg = strings.TrimSpace(msg + " " + labels(e.Fields))
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Seq, timeText(e.Time), e.Kind, msg)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nHEALTH HISTORY (%d newest)\n", len(d.History))
	if len(d.History) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tSTATE")
		for _, p := range d.History {
			fmt.Fprintf(tw, "%d\t%s\t%s\n", p.Seq, timeText(p.Time), p.State)
		}
		return tw.Flush()
	}
	return nil
}

// Age is how long before now t was, shortly: "45s ago", "3m ago",
// "2h ago", "5d ago"; "never" for the zero time.
func Age(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in the future"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return timeText(t) + " (" + Age(t, now) + ")"
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func durationText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func engine(h wire.Host) string {
	s := strings.TrimSpace(h.Engine.Flavor + " " + h.Engine.Version)
	return orDash(s)
}

// labels formats a map as k=v pairs sorted by key.
func labels(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a message on its table row.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 120 {
		s = string(r[:120]) + "…"
	}
	return s
}

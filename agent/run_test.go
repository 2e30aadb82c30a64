package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/berthhq/berth/provision"
)

// The daemon's loop logs a round's outcome when it changes, not every
// round: what an operator reads at info is one line per change.
func TestRoundsLogChangesOnly(t *testing.T) {
	type round struct {
		r   provision.Result
		ran bool
		err error
	}
	locked := errors.New("agent.db: database is locked")
	full := errors.New("agent.db: disk full")
	ok := round{ran: true}
	tests := []struct {
		name   string
		rounds []round
		want   []string // level and message of each info+ line
	}{
		{"steady", []round{ok, ok, ok, {ran: false}, ok}, nil},
		{"failing then fixed", []round{ok, {err: locked}, {err: locked}, {err: locked}, ok, ok},
			[]string{"ERROR run the provision plan", "INFO the provision plan runs again"}},
		{"a new error is said", []round{{err: locked}, {err: locked}, {err: full}, {err: full}},
			[]string{"ERROR run the provision plan", "ERROR run the provision plan"}},
		{"reboot pending said once", []round{{r: provision.Result{RebootPending: true}, ran: true}, {r: provision.Result{RebootPending: true}, ran: true}, {ran: false}, {r: provision.Result{RebootPending: true}, ran: true}, ok, {r: provision.Result{RebootPending: true}, ran: true}},
			[]string{"WARN the host reboots to finish provisioning", "WARN the host reboots to finish provisioning"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			o := &rounds{log: slog.New(slog.NewJSONHandler(&buf, nil))}
			for _, r := range tt.rounds {
				o.note(r.r, r.ran, r.err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if line == "" {
					continue
				}
				var rec struct{ Level, Msg string }
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatal(err)
				}
				got = append(got, rec.Level+" "+rec.Msg)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("logged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

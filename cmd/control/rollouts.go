package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/logging"
)

// rolloutsCommand is berth-control rollouts create|list|show|pause|
// resume|abort, through the operator API.
func rolloutsCommand() *cli.Command {
	r := &rolloutsCmd{}
	id := func(name, summary string, run func(context.Context, *cli.Invocation) error) *cli.Command {
		return &cli.Command{Name: name, Args: "ID", ArgsDoc: "one rollout ID", Summary: summary, Flags: r.reasonFlags, Run: run}
	}
	return &cli.Command{
		Name:    "rollouts",
		Summary: "move hosts to an engine or agent version in health-gated waves, through a running berth-control serve",
		Flags:   r.flags,
		Commands: []*cli.Command{
			{Name: "create", ArgsDoc: "no arguments (the rollout is flags: --selector, --kind, --version, …)",
				Summary: "start a rollout of --kind engine|agent --version V to the hosts --selector picks", Flags: r.createFlags, Run: r.create},
			{Name: "list", ArgsDoc: "no arguments", Summary: "list the rollouts, newest first", Run: r.list},
			{Name: "show", Args: "ID", ArgsDoc: "one rollout ID", Summary: "show a rollout: its waves, hosts by state and history (--watch follows it)",
				Flags: r.showFlags, Run: r.show},
			id("pause", "stop a rollout telling more hosts; resume continues it", r.action(wire.ActionPause)),
			id("resume", "continue a paused rollout", r.action(wire.ActionResume)),
			id("abort", "end a rollout and send the hosts it touched back to what they ran before", r.action(wire.ActionAbort)),
		},
	}
}

// rolloutsCmd holds the flags of berth-control rollouts; its methods are
// the subcommands.
type rolloutsCmd struct {
	apiFlags
	selector, kind, flavor, version, waves string
	bake                                   time.Duration
	maxFailures                            int
	maxFailurePercent                      float64
	rollbackOnHalt                         bool
	watch                                  bool
	interval                               time.Duration
	reason                                 string
}

func (r *rolloutsCmd) createFlags(fs *flag.FlagSet) {
	fs.StringVar(&r.selector, "selector", "", "the hosts whose labels match `KEY=VALUE[,KEY=VALUE]` (all must match)")
	fs.StringVar(&r.kind, "kind", "", "what moves: engine or agent")
	fs.StringVar(&r.flavor, "flavor", "", "the engine flavor, docker or containerd (engine rollouts only)")
	fs.StringVar(&r.version, "version", "", "the `VERSION` to move to; it must be signed in the release metadata for the hosts' OS and architecture")
	fs.StringVar(&r.waves, "waves", "", "cumulative `PERCENTAGES`, strictly increasing, the last 100 (default 1,10,50,100)")
	fs.DurationVar(&r.bake, "bake", 0, "how long a wave's hosts must report the version Healthy before the next wave starts, 1s to 24h (default 10m)")
	fs.IntVar(&r.maxFailures, "max-failures", 0, "halt when more than `N` hosts failed")
	fs.Float64Var(&r.maxFailurePercent, "max-failure-percent", 0, "halt when more than `P` percent of the hosts told so far failed")
	fs.BoolVar(&r.rollbackOnHalt, "rollback-on-halt", false, "when the rollout halts, send the hosts it touched back to what they ran before")
}

func (r *rolloutsCmd) showFlags(fs *flag.FlagSet) {
	fs.BoolVar(&r.watch, "watch", false, "follow the rollout until it completes, halts, is aborted or rolled back (exit 1 unless it completed)")
	fs.DurationVar(&r.interval, "interval", 2*time.Second, "how often --watch asks the server")
}

func (r *rolloutsCmd) reasonFlags(fs *flag.FlagSet) {
	fs.StringVar(&r.reason, "reason", "", "why, kept in the rollout's history")
}

// create is berth-control rollouts create. The spec is checked here as
// the server checks it, so that a typo is a usage error before any
// request.
func (r *rolloutsCmd) create(ctx context.Context, in *cli.Invocation) error {
	spec, err := r.spec(in.Flags)
	if err != nil {
		return err
	}
	c, err := r.connect(in)
	if err != nil {
		return err
	}
	ro, err := c.CreateRollout(ctx, spec)
	if err != nil {
		return badRequestIsUsage(err)
	}
	return printRollout(in, ro)
}

// spec is the RolloutSpec the flags describe, with the defaults filled
// and validated. Optional numbers count only when their flag was given.
func (r *rolloutsCmd) spec(fs *flag.FlagSet) (wire.RolloutSpec, error) {
	sel, err := parseSelector(r.selector)
	if err != nil {
		return wire.RolloutSpec{}, err
	}
	waves, err := parseWaves(r.waves)
	if err != nil {
		return wire.RolloutSpec{}, err
	}
	s := wire.RolloutSpec{Selector: sel, Kind: r.kind, Flavor: r.flavor, Version: r.version,
		Waves: waves, Bake: wire.Duration(r.bake), RollbackOnHalt: r.rollbackOnHalt}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "max-failures":
			s.MaxFailures = &r.maxFailures
		case "max-failure-percent":
			s.MaxFailurePercent = &r.maxFailurePercent
		}
	})
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return s, cli.Usage(err)
	}
	return s, nil
}

// parseSelector reads --selector k=v[,k=v].
func parseSelector(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, cli.Usagef("--selector is required: the labels of the hosts to move, such as --selector pool=web")
	}
	sel := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" || v == "" {
			return nil, cli.Usagef("--selector %q: want KEY=VALUE[,KEY=VALUE]", part)
		}
		if old, dup := sel[k]; dup && old != v {
			return nil, cli.Usagef("--selector names %s twice with different values; no host can match both", k)
		}
		sel[k] = v
	}
	return sel, nil
}

// parseWaves reads --waves 1,10,50,100 ("" for the default).
func parseWaves(s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ws []float64
	for part := range strings.SplitSeq(s, ",") {
		p, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(part), "%")), 64)
		if err != nil {
			return nil, cli.Usagef("--waves %q: %q is not a percentage; want numbers such as 1,10,50,100", s, part)
		}
		ws = append(ws, p)
	}
	return ws, nil
}

// list is berth-control rollouts list.
func (r *rolloutsCmd) list(ctx context.Context, in *cli.Invocation) error {
	c, err := r.connect(in)
	if err != nil {
		return err
	}
	l, err := c.Rollouts(ctx)
	if err != nil {
		return badRequestIsUsage(err)
	}
	return in.Print(l, func(w io.Writer) error { return client.WriteRollouts(w, l.Rollouts, time.Now()) })
}

// show is berth-control rollouts show ID [--watch].
func (r *rolloutsCmd) show(ctx context.Context, in *cli.Invocation) error {
	if r.watch && r.interval < 100*time.Millisecond {
		return cli.Usagef("--interval %s: want 100ms or more", r.interval)
	}
	c, err := r.connect(in)
	if err != nil {
		return err
	}
	ro, err := c.Rollout(ctx, in.Args[0])
	if err != nil {
		return badRequestIsUsage(err)
	}
	if !r.watch {
		return printRollout(in, ro)
	}
	ro, err = watchRollout(ctx, c, ro, r.interval, terminal(in), in.Stderr)
	if err != nil {
		return err
	}
	if err := printRollout(in, ro); err != nil {
		return err
	}
	if ro.State != wire.RolloutCompleted {
		return fmt.Errorf("rollout %s ended %s, not completed (its history says why)", ro.ID, ro.State)
	}
	return nil
}

// ended says whether a rollout will not move any more by itself.
func ended(state string) bool {
	switch state {
	case wire.RolloutCompleted, wire.RolloutHalted, wire.RolloutAborted, wire.RolloutRolledBack:
		return true
	}
	return false
}

// watchRollout asks for ro every interval until it ended, and shows it
// meanwhile: redrawn whole on a terminal (term), else a progress line on
// log whenever it changed.
func watchRollout(ctx context.Context, c *client.Client, ro wire.Rollout, interval time.Duration, term, log io.Writer) (wire.Rollout, error) {
	last := ""
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if term != nil {
			// Home and clear, then the view: a live page, not a scroll.
			fmt.Fprint(term, "\x1b[H\x1b[2J")
			_ = client.WriteRollout(term, ro, time.Now())
		} else if line := client.ProgressLine(ro); line != last {
			fmt.Fprintf(log, "%s %s\n", time.Now().UTC().Format(time.TimeOnly), line)
			last = line
		}
		if ended(ro.State) {
			return ro, nil
		}
		select {
		case <-ctx.Done():
			return ro, ctx.Err()
		case <-t.C:
		}
		next, err := c.Rollout(ctx, ro.ID)
		if err != nil {
			return ro, fmt.Errorf("watch rollout %s: %w", ro.ID, err)
		}
		ro = next
	}
}

// terminal is stderr when it is a terminal, for the live view; nil
// otherwise (progress lines then).
func terminal(in *cli.Invocation) io.Writer {
	if fl, ok := in.Stderr.(*os.File); ok && logging.IsTerminal(fl) {
		return fl
	}
	return nil
}

// action is berth-control rollouts pause|resume|abort ID [--reason R].
func (r *rolloutsCmd) action(name string) func(context.Context, *cli.Invocation) error {
	return func(ctx context.Context, in *cli.Invocation) error {
		if len(r.reason) > wire.MaxReasonLen {
			return cli.Usagef("--reason: %d bytes, over the limit of %d", len(r.reason), wire.MaxReasonLen)
		}
		c, err := r.connect(in)
		if err != nil {
			return err
		}
		do := map[string]func(context.Context, string, string) (wire.Rollout, error){
			wire.ActionPause: c.PauseRollout, wire.ActionResume: c.ResumeRollout, wire.ActionAbort: c.AbortRollout,
		}[name]
		ro, err := do(ctx, in.Args[0], r.reason)
		if err != nil {
			return badRequestIsUsage(err)
		}
		return printRollout(in, ro)
	}
}

func printRollout(in *cli.Invocation, ro wire.Rollout) error {
	return in.Print(ro, func(w io.Writer) error { return client.WriteRollout(w, ro, time.Now()) })
}

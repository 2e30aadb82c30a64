package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/cli"
)

// labelFlags collects repeated --label KEY=VALUE.
type labelFlags map[string]string

func (l labelFlags) String() string { return "" }

func (l labelFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", s)
	}
	l[k] = v
	return nil
}

// hostsCommand is berth-control hosts list|show|forget, through the
// operator API.
func hostsCommand() *cli.Command {
	h := &hostsCmd{labels: labelFlags{}}
	return &cli.Command{
		Name:    "hosts",
		Summary: "the fleet's hosts, through a running berth-control serve",
		Flags:   h.flags,
		Commands: []*cli.Command{
			{Name: "list", ArgsDoc: "no arguments (filters are flags: --label, --state, --engine-version)",
				Summary: "list hosts, filtered, sorted and paged on the server", Flags: h.listFlags, Run: h.list},
			{Name: "show", Args: "ID", ArgsDoc: "one host ID", Summary: "show one host: its state, checks, events and health history",
				Flags: h.showFlags, Run: h.show},
			{Name: "forget", Args: "ID", ArgsDoc: "one host ID",
				Summary: "reset a host: its next reports are taken whatever their numbers (its history is kept unless --drop-history)",
				Flags:   h.forgetFlags, Run: h.forget},
			{Name: "pin", Args: "ID", ArgsDoc: "one host ID",
				Summary: "fix a host's engine or agent version, whatever the rollouts say",
				Flags:   h.pinFlags, Run: h.pinHost},
			{Name: "unpin", Args: "ID", ArgsDoc: "one host ID",
				Summary: "let rollouts decide a host's versions again (both unless --engine or --agent)",
				Flags:   h.unpinFlags, Run: h.unpinHost},
		},
	}
}

// hostsCmd holds the flags of berth-control hosts; its methods are the
// subcommands.
type hostsCmd struct {
	apiFlags
	filter      wire.HostFilter
	labels      labelFlags
	all         bool
	history     int
	dropHistory bool
	pin         wire.Pin
	unpinEngine bool
	unpinAgent  bool
}

// apiFlags are the flags of the commands that talk to a running server.
type apiFlags struct {
	serverURL, tokenFile string
}

func (a *apiFlags) flags(fs *flag.FlagSet) {
	fs.StringVar(&a.serverURL, "server", "", "berth-control server `URL` (default $BERTH_SERVER, else "+client.DefaultServer+")")
	fs.StringVar(&a.tokenFile, "token-file", "", "`FILE` holding an operator token (else $BERTH_TOKEN)")
}

func (h *hostsCmd) listFlags(fs *flag.FlagSet) {
	f := &h.filter
	fs.Var(h.labels, "label", "only hosts with label `KEY=VALUE` (repeatable; all must match)")
	fs.StringVar(&f.State, "state", "", "only hosts in state Healthy, Degraded, Unhealthy, Initializing or Stale")
	fs.StringVar(&f.EngineVersion, "engine-version", "", "only hosts running this engine version")
	fs.StringVar(&f.AgentVersion, "agent-version", "", "only hosts running this agent version")
	fs.StringVar(&f.Sort, "sort", "", "id, state, engineVersion, agentVersion or lastReport; a leading - reverses")
	fs.IntVar(&f.Limit, "limit", 0, fmt.Sprintf("hosts per page (default %d, at most %d)", wire.DefaultLimit, wire.MaxLimit))
	fs.StringVar(&f.Cursor, "cursor", "", "start at this page (the cursor a previous list printed)")
	fs.BoolVar(&h.all, "all", false, "follow every page")
}

func (h *hostsCmd) showFlags(fs *flag.FlagSet) {
	fs.IntVar(&h.history, "history", 0, "heartbeats and events to show (default 50, at most 500)")
}

// connect is the operator API client that --server and --token-file (or
// their environment variables) name.
func (a *apiFlags) connect(in *cli.Invocation) (*client.Client, error) {
	token, err := client.LoadToken(a.tokenFile, in.Getenv("BERTH_TOKEN"))
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Options{Server: serverOr(a.serverURL, in.Getenv), Token: token, Logger: retryLogger(in)})
	if err != nil {
		return nil, cli.Usage(err)
	}
	return c, nil
}

// list is berth-control hosts list.
func (h *hostsCmd) list(ctx context.Context, in *cli.Invocation) error {
	f, err := listFilter(h.filter, h.labels)
	if err != nil {
		return err
	}
	c, err := h.connect(in)
	if err != nil {
		return err
	}
	var page wire.HostPage
	if h.all {
		page, err = c.AllHosts(ctx, f, 0)
	} else {
		page, err = c.Hosts(ctx, f)
	}
	if err != nil {
		return badRequestIsUsage(err)
	}
	if err := in.Print(newHostPageOut(page), func(w io.Writer) error { return client.WriteHosts(w, page.Hosts, time.Now()) }); err != nil {
		return err
	}
	if page.Next != "" && in.Output == cli.Text {
		fmt.Fprintf(in.Stderr, "%d of %d hosts shown; --all lists every one, --cursor %s the next page\n", len(page.Hosts), page.Total, page.Next)
	}
	return nil
}

// listFilter is the filter hosts list asks the server for: f from the
// flags with the --label pairs. A --limit out of range is a usage error,
// caught before any request.
func listFilter(f wire.HostFilter, labels labelFlags) (wire.HostFilter, error) {
	if f.Limit < 0 || f.Limit > wire.MaxLimit {
		return wire.HostFilter{}, cli.Usagef("--limit %d: want 1 to %d", f.Limit, wire.MaxLimit)
	}
	if len(labels) > 0 {
		f.Labels = labels
	}
	return f, nil
}

// show is berth-control hosts show ID.
func (h *hostsCmd) show(ctx context.Context, in *cli.Invocation) error {
	if h.history < 0 {
		return cli.Usagef("--history %d: want 0 or more", h.history)
	}
	c, err := h.connect(in)
	if err != nil {
		return err
	}
	d, err := c.Host(ctx, in.Args[0], h.history)
	if err != nil {
		return badRequestIsUsage(err)
	}
	return in.Print(hostDetailOut{HostDetail: d, Interval: cli.Duration(d.Interval)},
		func(w io.Writer) error { return client.WriteHost(w, d, time.Now()) })
}

// The --output json forms of hosts list and show: the API's types with
// the interval as a duration string ("1m0s"), which version 1 of the API
// sends in nanoseconds. The shallower Interval field hides the embedded one.
type (
	hostOut struct {
		wire.Host
		Interval cli.Duration `json:"interval"`
	}
	hostPageOut struct {
		wire.HostPage
		Hosts []hostOut `json:"hosts"`
	}
	hostDetailOut struct {
		wire.HostDetail
		Interval cli.Duration `json:"interval"`
	}
)

func newHostPageOut(p wire.HostPage) hostPageOut {
	out := hostPageOut{HostPage: p, Hosts: make([]hostOut, len(p.Hosts))}
	for i, h := range p.Hosts {
		out.Hosts[i] = hostOut{Host: h, Interval: cli.Duration(h.Interval)}
	}
	return out
}

// badRequestIsUsage makes the server's 400 a usage error (exit 2): the
// request came from the flags (--state Sleepy), so they are what to fix.
// Other answers (401, 403, 404, 5xx) and network errors are failures.
func badRequestIsUsage(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
		return cli.Usage(err)
	}
	return err
}

// serverOr is --server, else $BERTH_SERVER, else the default.
func serverOr(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := getenv("BERTH_SERVER"); v != "" {
		return v
	}
	return client.DefaultServer
}

// retryLogger is the client's logger: retries are logged only when
// --log-level (or BERTH_LOG_LEVEL) asks for info or debug, since the final
// error says it all.
func retryLogger(in *cli.Invocation) *slog.Logger {
	if in.LogLevel == "debug" || in.LogLevel == "info" {
		return in.Log
	}
	return nil
}

func (h *hostsCmd) forgetFlags(fs *flag.FlagSet) {
	fs.BoolVar(&h.dropHistory, "drop-history", false, "delete the host's heartbeats and events too")
}

// forget is berth-control hosts forget.
func (h *hostsCmd) forget(ctx context.Context, in *cli.Invocation) error {
	c, err := h.connect(in)
	if err != nil {
		return err
	}
	f, err := c.Forget(ctx, in.Args[0], h.dropHistory)
	if err != nil {
		return badRequestIsUsage(err)
	}
	return in.Print(f, func(w io.Writer) error { return writeForgotten(w, f) })
}

// writeForgotten is hosts forget's text output.
func writeForgotten(w io.Writer, f wire.Forgotten) error {
	var err error
	if f.HistoryDropped {
		_, err = fmt.Fprintf(w, "forgot host %s and deleted its %d heartbeats and %d events; its next report starts it anew\n", f.ID, f.Heartbeats, f.Events)
	} else {
		_, err = fmt.Fprintf(w, "forgot host %s (its heartbeats and events are kept); its next report starts it anew\n", f.ID)
	}
	return err
}

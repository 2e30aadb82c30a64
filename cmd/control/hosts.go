package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/logging"
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

// cmdHosts is berth-control hosts list|show, through the operator API.
func cmdHosts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("want list or show")}
	}
	sub := args[0]
	fs := flag.NewFlagSet("hosts "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	serverURL := fs.String("server", envOr("BERTH_SERVER", client.DefaultServer), "berth-control server URL (env BERTH_SERVER)")
	tokenFile := fs.String("token-file", "", "file holding an operator token (else env BERTH_TOKEN)")
	output := fs.String("output", "text", "text or json")
	var f wire.HostFilter
	labels := labelFlags{}
	var all bool
	var history int
	switch sub {
	case "list":
		fs.Var(labels, "label", "only hosts with label `KEY=VALUE` (repeatable; all must match)")
		fs.StringVar(&f.State, "state", "", "only hosts in state Healthy, Degraded, Unhealthy, Initializing or Stale")
		fs.StringVar(&f.EngineVersion, "engine-version", "", "only hosts running this engine version")
		fs.StringVar(&f.AgentVersion, "agent-version", "", "only hosts running this agent version")
		fs.StringVar(&f.Sort, "sort", "", "id, state, engineVersion, agentVersion or lastReport; a leading - reverses")
		fs.IntVar(&f.Limit, "limit", 0, fmt.Sprintf("hosts per page (default %d, at most %d)", wire.DefaultLimit, wire.MaxLimit))
		fs.StringVar(&f.Cursor, "cursor", "", "start at this page (the cursor a previous list printed)")
		fs.BoolVar(&all, "all", false, "follow every page")
	case "show":
		fs.IntVar(&history, "history", 0, "heartbeats and events to show (default 50, at most 500)")
	default:
		return usageError{fmt.Errorf("unknown hosts command %q: want list or show", sub)}
	}
	rest, err := cli.ParseInterspersed(fs, args[1:])
	if err != nil {
		return usageError{err}
	}
	if *output != "text" && *output != "json" {
		return usageError{fmt.Errorf("--output %q: want text or json", *output)}
	}
	if f.Limit < 0 || f.Limit > wire.MaxLimit {
		return usageError{fmt.Errorf("--limit %d: want 1 to %d", f.Limit, wire.MaxLimit)}
	}
	if history < 0 {
		return usageError{fmt.Errorf("--history %d: want 0 or more", history)}
	}
	switch {
	case sub == "list" && len(rest) != 0:
		return usageError{fmt.Errorf("list takes no arguments, got %q (filters are flags: --label, --state, --engine-version)", rest)}
	case sub == "show" && len(rest) != 1:
		return usageError{errors.New("show takes one host ID")}
	}
	if len(labels) > 0 {
		f.Labels = labels
	}
	token, err := client.LoadToken(*tokenFile, os.Getenv("BERTH_TOKEN"))
	if err != nil {
		return err
	}
	// Retries are logged only on request: the final error says it all.
	var log *slog.Logger
	if os.Getenv("BERTH_LOG_LEVEL") != "" {
		log, _ = logging.New(stderr, "text", logging.LevelFromEnv("info"))
	}
	c, err := client.New(client.Options{Server: *serverURL, Token: token, Logger: log})
	if err != nil {
		return usageError{err}
	}
	if sub == "show" {
		d, err := c.Host(ctx, rest[0], history)
		if err != nil {
			return err
		}
		if *output == "json" {
			return cli.PrintJSON(stdout, d)
		}
		return client.WriteHost(stdout, d, time.Now())
	}
	var page wire.HostPage
	if all {
		page, err = c.AllHosts(ctx, f, 0)
	} else {
		page, err = c.Hosts(ctx, f)
	}
	if err != nil {
		return err
	}
	if page.Hosts == nil {
		page.Hosts = []wire.Host{}
	}
	if *output == "json" {
		return cli.PrintJSON(stdout, page)
	}
	if err := client.WriteHosts(stdout, page.Hosts, time.Now()); err != nil {
		return err
	}
	if page.Next != "" {
		fmt.Fprintf(stderr, "%d of %d hosts shown; --all lists every one, --cursor %s the next page\n", len(page.Hosts), page.Total, page.Next)
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

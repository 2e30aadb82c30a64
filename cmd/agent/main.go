// Command berth-agent is the Berth agent: it installs and upgrades the
// host's container engine, serves the image cache and reports health. This
// file holds the command table: each command parses its arguments and calls
// the composition root (package agent); see SPEC.md and docs/cli.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/berthhq/berth/agent"
	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/disk"

	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/logging"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/progress"
	"github.com/berthhq/berth/internal/units"
	"github.com/berthhq/berth/telemetry"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs one command line and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return program().Run(ctx, args, stdout, stderr)
}

// flags holds the values of the flags: --config (program-wide) and each
// command's own. Each run builds its own, so tests run commands side by
// side.
type flags struct {
	config    string
	watch     bool
	namespace string
	to        string
	all       bool
	version   string         // self-update --version
	check     bool           // self-update --check
	cfgEdit   configureFlags // service configure
}

func program() *cli.Program {
	f := &flags{}
	return &cli.Program{
		Name:    "berth-agent",
		Summary: "keeps this container host's engine installed, current and healthy",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.config, "config", paths.ConfigFile(), "config `PATH` ($BERTH_CONFIG, if set, overrides the platform default)")
		},
		Commands: []*cli.Command{
			{Name: "run", Summary: "run the agent in the foreground (what the service runs)", Daemon: true, Run: f.run},
			{Name: "service", Summary: "the agent as a Windows service or systemd unit", Commands: f.serviceCommands()},
			f.provisionCommand(),
			{Name: "extension", Summary: "the Azure VM extension handler's commands (run by the guest agent)", Commands: f.extensionCommands()},
			{Name: "engine", Summary: "the container engine on this host", Commands: []*cli.Command{
				{Name: "status", Summary: "the engine's state, versions and API", Run: f.engineStatus},
				{Name: "list", Summary: "installed versions (* active, - previous, ! failed)", Run: f.engineList},
				{Name: "install", Args: "VERSION", ArgsDoc: "the engine version to install and start", Summary: "install a version and run it", Run: f.engineChange},
				{Name: "upgrade", Args: "VERSION", ArgsDoc: "the engine version to move to", Summary: "health-gated upgrade; rolls back by itself", Run: f.engineChange},
				{Name: "rollback", Summary: "back to the previous version", Run: f.engineRollback},
			}},
			{Name: "config", Summary: "the agent configuration", Commands: []*cli.Command{
				{Name: "validate", Args: "[PATH]", ArgsDoc: "the file to check (default: --config)", Summary: "check a config file and print every error", Run: f.configValidate},
				{Name: "show", Summary: "the effective configuration, defaults resolved, secrets redacted", Run: f.configShow},
			}},
			{Name: "pull", Args: "IMAGE...", ArgsDoc: "image references, such as busybox or myregistry.azurecr.io/team/app:v2", Summary: "pull images through the cache into the engine", Run: f.pull,
				Flags: func(fs *flag.FlagSet) {
					fs.StringVar(&f.namespace, "namespace", "", "containerd only: the `NAMESPACE` to pull into (default k8s.io, or default when engine.settings disables the CRI plugin)")
				}},
			{Name: "cache", Summary: "the image cache", Commands: []*cli.Command{
				{Name: "stats", Summary: "figures and the health of each tier", Run: f.cacheStats},
				{Name: "verify", Summary: "check every blob on disk against its digest; corrupt ones are removed", Run: f.cacheVerify},
				{Name: "prune", Summary: "evict least recently used blobs down to a size", Run: f.cachePrune,
					Flags: func(fs *flag.FlagSet) {
						fs.StringVar(&f.to, "to", "", "shrink the disk tier to `SIZE`, such as 10GiB (default: cache.local.maxSize)")
						fs.BoolVar(&f.all, "all", false, "empty the disk tier")
					}},
			}},
			{Name: "health", Summary: "run the health checks and print them", Run: f.health,
				Flags: func(fs *flag.FlagSet) {
					fs.BoolVar(&f.watch, "watch", false, "run the checks every 5 s until interrupted")
				}},
			{Name: "self-update", Summary: "update the agent itself from the signed releases; waits until the launcher has it Healthy", Run: f.selfUpdate,
				Help: "Without --version, the newest agent package of engine.channel for this host. The launcher the service runs switches to it; a version that fails is blacklisted and the host goes back to the previous good one.",
				Flags: func(fs *flag.FlagSet) {
					fs.BoolVar(&f.check, "check", false, "only say whether an update is available")
					fs.StringVar(&f.version, "version", "", "move to `VERSION` (also a downgrade; clears its blacklist entry)")
				}},
			{Name: "version", Summary: "version, commit, build date and platform; the launcher's and the running agent's versions", Run: f.cmdVersion},
		},
	}
}

func (f *flags) load() (config.Config, error) { return config.Load(f.config) }

func (f *flags) configValidate(ctx context.Context, in *cli.Invocation) error {
	path := f.config
	if len(in.Args) == 1 {
		path = in.Args[0]
	}
	if _, err := config.Load(path); err != nil {
		return err
	}
	return in.Print(map[string]any{"path": path, "ok": true}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "%s: ok\n", path)
		return err
	})
}

func (f *flags) configShow(ctx context.Context, in *cli.Invocation) error {
	cfg, err := f.load()
	if err != nil {
		return err
	}
	// What the agent will use: defaults resolved for this platform.
	cfg = cfg.Effective()
	show := cfg.ShowYAML
	if in.Output == cli.JSON {
		show = cfg.ShowJSON
	}
	out, err := show()
	if err != nil {
		return err
	}
	_, err = in.Stdout.Write(out)
	return err
}

// terminal is stderr when it is a terminal, for progress displays; nil
// otherwise (progress is then logged).
func terminal(in *cli.Invocation) io.Writer {
	if fl, ok := in.Stderr.(*os.File); ok && logging.IsTerminal(fl) {
		return fl
	}
	return nil
}

// engine opens the engine manager, with a progress display for long steps.
func (f *flags) engine(ctx context.Context, in *cli.Invocation) (*engine.Manager, *progress.Reporter, error) {
	cfg, err := f.load()
	if err != nil {
		return nil, nil, err
	}
	pr := progress.New(in.Stderr, terminal(in) != nil, in.Log)
	m, err := agent.OpenEngine(ctx, cfg, agent.Options{Logger: in.Log, Progress: pr.Update})
	return m, pr, err
}

func (f *flags) engineStatus(ctx context.Context, in *cli.Invocation) error {
	m, _, err := f.engine(ctx, in)
	if err != nil {
		return err
	}
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	return in.Print(st, func(w io.Writer) error { printEngineStatus(w, st); return nil })
}

func (f *flags) engineList(ctx context.Context, in *cli.Invocation) error {
	m, _, err := f.engine(ctx, in)
	if err != nil {
		return err
	}
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	return in.Print(st.Installed, func(w io.Writer) error {
		for _, v := range st.Installed {
			fmt.Fprintf(w, "%s %s\n", versionMark(st, v), v)
		}
		return nil
	})
}

// versionMark is the column `engine list` puts before a version.
func versionMark(st engine.Status, v string) string {
	if _, failed := st.Failed[v]; failed {
		return "!"
	}
	switch v {
	case st.Active:
		return "*"
	case st.Previous:
		return "-"
	}
	return " "
}

func (f *flags) engineChange(ctx context.Context, in *cli.Invocation) error {
	v, upgrade := in.Args[0], strings.HasSuffix(in.Name, " upgrade")
	return f.engineOp(ctx, in, func(m *engine.Manager) error {
		if upgrade {
			return m.Upgrade(ctx, v)
		}
		return m.Install(ctx, v)
	}, func(st engine.Status) string { return fmt.Sprintf("engine %s %s: ok", st.Flavor, v) })
}

func (f *flags) engineRollback(ctx context.Context, in *cli.Invocation) error {
	return f.engineOp(ctx, in, func(m *engine.Manager) error { return m.Rollback(ctx) },
		func(st engine.Status) string { return "engine rolled back to " + st.Active })
}

// engineOp runs one engine change with a progress display, then prints the
// engine's status (JSON) or what changed (text).
func (f *flags) engineOp(ctx context.Context, in *cli.Invocation, op func(*engine.Manager) error, done func(engine.Status) string) error {
	m, pr, err := f.engine(ctx, in)
	if err != nil {
		return err
	}
	defer pr.Done()
	if err := op(m); err != nil {
		return err
	}
	pr.Done()
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	return in.Print(st, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, done(st))
		return err
	})
}

func printEngineStatus(w io.Writer, st engine.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	state := "unhealthy"
	if st.Healthy {
		state = "healthy"
	}
	fmt.Fprintf(tw, "flavor:\t%s (managed: %v, runs as: %s)\n", st.Flavor, st.Managed, st.Runner)
	fmt.Fprintf(tw, "state:\t%s\n", state)
	fmt.Fprintf(tw, "active:\t%s\n", dash(st.Active))
	fmt.Fprintf(tw, "previous:\t%s\n", dash(st.Previous))
	running := "no"
	if st.Running {
		running = fmt.Sprintf("yes (pid %d, version %s)", st.PID, dash(st.RunningVersion))
	}
	fmt.Fprintf(tw, "running:\t%s\n", running)
	if st.API != nil {
		fmt.Fprintf(tw, "api:\t%s (engine %s, API %s)\n", st.Endpoint, st.API.Version, st.API.APIVersion)
	} else {
		fmt.Fprintf(tw, "api:\t%s: %s\n", st.Endpoint, st.APIError)
	}
	for _, c := range st.Host {
		fmt.Fprintf(tw, "%s:\t%s %s\n", c.Name, c.Status, c.Message)
	}
	fmt.Fprintf(tw, "installed:\t%s\n", dash(strings.Join(st.Installed, ", ")))
	for v, fl := range st.Failed {
		fmt.Fprintf(tw, "failed:\t%s at %s: %s\n", v, fl.At.Format("2006-01-02 15:04:05Z07:00"), fl.Reason)
	}
	if st.Journal != nil {
		fmt.Fprintf(tw, "in progress:\t%s %s → %s (step %s)\n", st.Journal.Op, dash(st.Journal.From), st.Journal.To, st.Journal.Step)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// pulled is one line of `pull`'s output.
type pulled struct {
	Image  string `json:"image"`
	Target string `json:"target,omitempty"`
}

func (f *flags) pull(ctx context.Context, in *cli.Invocation) error {
	cfg, err := f.load()
	if err != nil {
		return err
	}
	p, err := agent.Puller(ctx, cfg, f.namespace, terminal(in), in.Log)
	if errors.Is(err, engine.ErrNotSupported) {
		return cli.Usage(err)
	}
	if err != nil {
		return err
	}
	names, err := p.Pull(ctx, in.Args...)
	if err != nil {
		return err
	}
	out := make([]pulled, len(names))
	for i, name := range names {
		out[i] = pulled{Image: name, Target: p.Target()}
	}
	return in.Print(out, func(w io.Writer) error {
		for _, o := range out {
			if o.Target != "" {
				fmt.Fprintf(w, "pulled %s (%s)\n", o.Image, o.Target)
			} else {
				fmt.Fprintf(w, "pulled %s\n", o.Image)
			}
		}
		return nil
	})
}

// cache opens the cache's tiers, refusing a config that turned it off.
func (f *flags) cache(ctx context.Context, in *cli.Invocation) (*cacheHandle, error) {
	cfg, err := f.load()
	if err != nil {
		return nil, err
	}
	if !cfg.Cache.Enabled {
		return nil, cli.Usagef("cache.enabled is false in %s", f.config)
	}
	c, err := agent.OpenCache(ctx, cfg, in.Log)
	if err != nil {
		return nil, err
	}
	return &cacheHandle{Service: c, cfg: cfg}, nil
}

type cacheHandle struct {
	*imagecache.Service
	cfg config.Config
}

func (f *flags) cacheStats(ctx context.Context, in *cli.Invocation) error {
	c, err := f.cache(ctx, in)
	if err != nil {
		return err
	}
	defer c.Close()
	st := c.Stats(ctx)
	return in.Print(st, func(w io.Writer) error {
		fmt.Fprintf(w, "listen:    %s\n", st.Listen)
		fmt.Fprintf(w, "disk:      %d blobs, %s of %s; %d evicted (%s), %d corrupt removed\n",
			st.Disk.Blobs, units.Size(st.Disk.Bytes), units.Size(st.Disk.MaxSize), st.Disk.Evictions, units.Size(st.Disk.EvictedBytes), st.Disk.Corrupt)
		for _, t := range st.Tiers {
			state := "healthy"
			if !t.Healthy {
				state = "unhealthy: " + t.Error
			}
			fmt.Fprintf(w, "tier:      %s %s\n", t.Name, state)
		}
		return nil
	})
}

func (f *flags) cacheVerify(ctx context.Context, in *cli.Invocation) error {
	c, err := f.cache(ctx, in)
	if err != nil {
		return err
	}
	defer c.Close()
	pr := progress.New(in.Stderr, terminal(in) != nil, in.Log)
	removed, err := c.Disk.Verify(ctx, func(p disk.VerifyProgress) { pr.Update("verify", p.Bytes, p.TotalBytes) })
	pr.Done()
	if err != nil {
		return err
	}
	if err := in.Print(map[string]any{"removed": removed}, func(w io.Writer) error {
		for _, d := range removed {
			fmt.Fprintf(w, "removed corrupt %s\n", d)
		}
		_, err := fmt.Fprintf(w, "verified: %d corrupt blobs removed\n", len(removed))
		return err
	}); err != nil {
		return err
	}
	if len(removed) > 0 {
		return fmt.Errorf("%d corrupt blobs found and removed; they will be fetched again", len(removed))
	}
	return nil
}

// pruneTarget is the size `cache prune` shrinks the disk tier to: --all
// empties it, --to SIZE, else cache.local.maxSize.
func pruneTarget(to string, all bool, maxSize units.Size) (units.Size, error) {
	switch {
	case all && to != "":
		return 0, cli.Usagef("--all and --to exclude each other: --all empties the tier, --to SIZE shrinks it to SIZE")
	case all:
		return 0, nil
	case to != "":
		s, err := units.ParseSize(to)
		if err != nil {
			return 0, cli.Usagef("--to %q: %v", to, err)
		}
		return s, nil
	}
	return maxSize, nil
}

func (f *flags) cachePrune(ctx context.Context, in *cli.Invocation) error {
	c, err := f.cache(ctx, in)
	if err != nil {
		return err
	}
	defer c.Close()
	target, err := pruneTarget(f.to, f.all, c.cfg.Cache.Local.MaxSize)
	if err != nil {
		return err
	}
	res, err := c.Disk.Prune(ctx, int64(target))
	if err != nil {
		return err
	}
	return in.Print(res, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "pruned %d blobs (%s) down to %s\n", res.Blobs, units.Size(res.Bytes), target)
		return err
	})
}

func (f *flags) health(ctx context.Context, in *cli.Invocation) error {
	cfg, err := f.load()
	if err != nil {
		return err
	}
	checks, err := agent.HealthChecks(ctx, cfg, in.Log)
	if err != nil {
		return err
	}
	for {
		res := telemetry.Run(ctx, checks, 10*time.Second)
		if err := in.Print(res, func(w io.Writer) error {
			fmt.Fprintf(w, "%s  %s\n", res.Time.Format(time.RFC3339), res.State)
			for _, c := range res.Checks {
				fmt.Fprintf(w, "  %-4s %-28s %s\n", c.Status, c.Name, c.Message)
			}
			return nil
		}); err != nil {
			return err
		}
		if !f.watch {
			if res.HTTPStatus() != 200 {
				return fmt.Errorf("host is %s", res.State)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

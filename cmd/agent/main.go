// Command berth-agent is the Berth agent: it installs and upgrades the
// host's container engine, serves the image cache and reports health. This
// file only parses the command line and wires the packages; see SPEC.md for
// the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/engine/docker"
	"github.com/berthhq/berth/imagecache/disk"
	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/logging"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/progress"
	"github.com/berthhq/berth/internal/svc"
	"github.com/berthhq/berth/internal/units"
	"github.com/berthhq/berth/provision"
	"github.com/berthhq/berth/telemetry"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes of SPEC.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

// usageError marks errors that exit 2.
type usageError struct{ error }

// env is what every command gets: its streams, flags and a lazily loaded
// config.
type env struct {
	stdout, stderr io.Writer
	configPath     string
	output         string
	logLevel       string
	watch          bool
	namespace      string // pull: containerd's namespace
	args           []string
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env) error
}

func commands() []command {
	return []command{
		{"run", "run the agent in the foreground (what the service runs)", cmdRun},
		{"service", "install|uninstall|start|stop|restart|status the agent service", cmdService},
		{"engine", "status|list|install V|upgrade V|rollback the container engine", cmdEngine},
		{"config", "validate [PATH]|show the agent configuration", cmdConfig},
		{"provision", "converge the host once (prerequisites, engine, cache, prewarm)", notYet},
		{"extension", "Azure VM extension handler entry points", notYet},
		{"pull", "pull images through the cache into the engine", cmdPull},
		{"cache", "stats|verify|prune [--to SIZE] the image cache", cmdCache},
		{"health", "run the health checks and print them (--watch: every 5 s)", cmdHealth},
		{"self-update", "update the agent from the release channel", notYet},
		{"version", "print version, commit, build date and platform", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: berth-agent COMMAND [ARGS] [--config PATH] [--output text|json]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return exitConfig
		}
		return exitOK
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == args[0] {
			cmd = &c
			break
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "berth-agent: unknown command %q\n", args[0])
		usage(stderr)
		return exitConfig
	}
	e := &env{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("berth-agent "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&e.configPath, "config", paths.ConfigFile(), "config file (default: $BERTH_CONFIG, else the platform path)")
	fs.StringVar(&e.output, "output", "text", "output format: text or json")
	fs.StringVar(&e.logLevel, "log-level", logging.LevelFromEnv("info"), "log level: debug, info, warn, error")
	if cmd.name == "health" {
		fs.BoolVar(&e.watch, "watch", false, "run the checks every 5 s until interrupted")
	}
	if cmd.name == "pull" {
		fs.StringVar(&e.namespace, "namespace", "", "containerd only: the namespace to pull into (default k8s.io, or default when engine.settings disables the CRI plugin)")
	}
	rest, err := cli.ParseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if e.output != "text" && e.output != "json" {
		fmt.Fprintf(stderr, "berth-agent %s: --output %q: want text or json\n", cmd.name, e.output)
		return exitConfig
	}
	e.args = rest
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = cmd.run(ctx, e)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "berth-agent %s: %v\n", cmd.name, err)
	var ue usageError
	var ce config.Errors
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return exitConfig
	}
	return exitFail
}

func (e *env) loadConfig() (config.Config, error) {
	cfg, err := config.Load(e.configPath)
	if err != nil {
		return cfg, err
	}
	return cfg, nil
}

func (e *env) logger() *slog.Logger {
	log, err := logging.New(e.stderr, "text", e.logLevel)
	if err != nil {
		log, _ = logging.New(e.stderr, "text", "info")
	}
	return log
}

func (e *env) printJSON(v any) error { return cli.PrintJSON(e.stdout, v) }

func (e *env) want(n int, what string) error {
	if len(e.args) != n {
		return usageError{fmt.Errorf("want %s", what)}
	}
	return nil
}

func notYet(ctx context.Context, e *env) error {
	return errors.New("not available in this build of berth-agent yet")
}

func cmdVersion(ctx context.Context, e *env) error {
	info := buildinfo.Get()
	if e.output == "json" {
		return e.printJSON(info)
	}
	fmt.Fprintf(e.stdout, "berth-agent %s (commit %s, built %s, %s, %s)\n", info.Version, info.Commit, info.Date, info.Platform, info.Go)
	return nil
}

func cmdConfig(ctx context.Context, e *env) error {
	if len(e.args) == 0 {
		return usageError{errors.New("want validate [PATH] or show")}
	}
	switch e.args[0] {
	case "validate":
		path := e.configPath
		if len(e.args) == 2 {
			path = e.args[1]
		} else if len(e.args) > 2 {
			return usageError{errors.New("want validate [PATH]")}
		}
		if _, err := config.Load(path); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", path)
		return nil
	case "show":
		cfg, err := e.loadConfig()
		if err != nil {
			return err
		}
		cfg = cfg.Effective()
		show := cfg.ShowYAML
		if e.output == "json" {
			show = cfg.ShowJSON
		}
		out, err := show()
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(out)
		return err
	}
	return usageError{fmt.Errorf("unknown config command %q: want validate or show", e.args[0])}
}

// host loads the config and wires the agent's components.
func (e *env) host(ctx context.Context) (*provision.Host, *progress.Reporter, error) {
	cfg, err := e.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	log := e.logger()
	term := false
	if f, ok := e.stderr.(*os.File); ok {
		term = logging.IsTerminal(f)
	}
	pr := progress.New(e.stderr, term, log)
	h, err := provision.NewHost(ctx, cfg, provision.Options{Logger: log, Progress: pr.Update})
	return h, pr, err
}

func cmdEngine(ctx context.Context, e *env) error {
	arity := map[string]string{"status": "", "list": "", "rollback": "", "install": "VERSION", "upgrade": "VERSION"}
	if len(e.args) == 0 {
		return usageError{errors.New("want status, list, install V, upgrade V or rollback")}
	}
	want, ok := arity[e.args[0]]
	if !ok {
		return usageError{fmt.Errorf("unknown engine command %q: want status, list, install V, upgrade V or rollback", e.args[0])}
	}
	if n := 1 + len(strings.Fields(want)); len(e.args) != n {
		return usageError{fmt.Errorf("want %s", strings.TrimSpace(e.args[0]+" "+want))}
	}
	h, pr, err := e.host(ctx)
	if err != nil {
		return err
	}
	defer pr.Done()
	m := h.Engine
	switch e.args[0] {
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		if e.output == "json" {
			return e.printJSON(st)
		}
		printEngineStatus(e.stdout, st)
		return nil
	case "list":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		if e.output == "json" {
			return e.printJSON(st.Installed)
		}
		for _, v := range st.Installed {
			mark := " "
			switch v {
			case st.Active:
				mark = "*"
			case st.Previous:
				mark = "-"
			}
			if _, failed := st.Failed[v]; failed {
				mark = "!"
			}
			fmt.Fprintf(e.stdout, "%s %s\n", mark, v)
		}
		return nil
	case "install", "upgrade":
		v := e.args[1]
		if e.args[0] == "install" {
			err = m.Install(ctx, v)
		} else {
			err = m.Upgrade(ctx, v)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "engine %s %s: ok\n", h.Config.Engine.Flavor, v)
		return nil
	case "rollback":
		if err := m.Rollback(ctx); err != nil {
			return err
		}
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "engine rolled back to %s\n", st.Active)
		return nil
	}
	return nil
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
	for v, f := range st.Failed {
		fmt.Fprintf(tw, "failed:\t%s at %s: %s\n", v, f.At.Format("2006-01-02 15:04:05Z07:00"), f.Reason)
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

func cmdRun(ctx context.Context, e *env) error {
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	logFile := &logging.RotatingFile{Path: filepath.Join(cfg.StateDir(), paths.LogsDir, "agent.log"), MaxBytes: 20 << 20, Keep: 5}
	defer logFile.Close()
	log, err := logging.New(io.MultiWriter(e.stderr, logFile), "json", e.logLevel)
	if err != nil {
		return usageError{err}
	}
	s, err := svc.New(serviceConfig(e.configPath), func(ctx context.Context) error {
		h, err := provision.NewHost(ctx, cfg, provision.Options{Logger: log, Progress: progress.New(nil, false, log).Update})
		if err != nil {
			return err
		}
		return h.Run(ctx)
	})
	if err != nil {
		return err
	}
	return s.Run()
}

func serviceConfig(configPath string) svc.Config {
	exe, err := os.Executable()
	if err != nil {
		exe = "berth-agent"
	}
	return svc.Config{
		Name:        "berth-agent",
		DisplayName: "Berth agent",
		Description: "Keeps this container host's engine installed, current and healthy (Berth).",
		Executable:  exe,
		Arguments:   []string{"run", "--config", configPath},
	}
}

func cmdService(ctx context.Context, e *env) error {
	if err := e.want(1, "install, uninstall, start, stop, restart or status"); err != nil {
		return err
	}
	s, err := svc.New(serviceConfig(e.configPath), nil)
	if err != nil {
		return err
	}
	switch e.args[0] {
	case "install":
		if _, err := config.Load(e.configPath); err != nil {
			return err
		}
		err = s.Install(ctx)
	case "uninstall":
		err = s.Uninstall(ctx)
	case "start":
		err = s.Start(ctx)
	case "stop":
		err = s.Stop(ctx)
	case "restart":
		err = s.Restart(ctx)
	case "status":
		st, err := s.Status(ctx)
		if err != nil {
			return err
		}
		if e.output == "json" {
			return e.printJSON(map[string]string{"service": "berth-agent", "status": string(st)})
		}
		fmt.Fprintf(e.stdout, "berth-agent service: %s\n", st)
		return nil
	default:
		return usageError{fmt.Errorf("unknown service command %q", e.args[0])}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "berth-agent service %s: ok\n", e.args[0])
	return nil
}

func cmdPull(ctx context.Context, e *env) error {
	if len(e.args) == 0 {
		return usageError{errors.New("want one or more IMAGE references")}
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	log := e.logger()
	term := false
	if f, ok := e.stderr.(*os.File); ok {
		term = logging.IsTerminal(f)
	}
	if cfg.Engine.Flavor == "containerd" {
		return pullContainerd(ctx, e, cfg, log, term)
	}
	if e.namespace != "" {
		return usageError{errors.New("--namespace is for engine.flavor containerd; dockerd has no namespaces")}
	}
	bars := progress.NewMulti(e.stderr, term, log)
	defer bars.Done()
	p, err := provision.NewPuller(cfg, log, func(image string, ev docker.PullEvent) {
		if ev.ID != "" {
			bars.Set(ev.ID, ev.Status, ev.Current, ev.Total)
		}
	})
	if err != nil {
		return err
	}
	if err := p.Pull(ctx, e.args...); err != nil {
		return err
	}
	bars.Done()
	for _, img := range e.args {
		fmt.Fprintf(e.stdout, "pulled %s\n", img)
	}
	return nil
}

// pullContainerd pulls with the engine's own ctr; on a terminal ctr draws
// its own progress table on stderr.
func pullContainerd(ctx context.Context, e *env, cfg config.Config, log *slog.Logger, term bool) error {
	if e.namespace != "" {
		if err := provision.CheckNamespace(e.namespace); err != nil {
			return usageError{err}
		}
	}
	h, err := provision.NewHost(ctx, cfg, provision.Options{Logger: log})
	if err != nil {
		return err
	}
	var out io.Writer
	if term {
		out = e.stderr
	}
	p, err := h.ContainerdPuller(ctx, e.namespace, out)
	if err != nil {
		return err
	}
	if err := p.Pull(ctx, e.args...); err != nil {
		return err
	}
	for _, img := range e.args {
		ref, _ := provision.ContainerdRef(img) // Pull checked it
		fmt.Fprintf(e.stdout, "pulled %s (containerd namespace %s)\n", ref, p.Namespace)
	}
	return nil
}

func cmdCache(ctx context.Context, e *env) error {
	if len(e.args) == 0 {
		return usageError{errors.New("want stats, verify or prune [SIZE]")}
	}
	sub := e.args[0]
	switch sub {
	case "stats", "verify":
		if len(e.args) != 1 {
			return usageError{fmt.Errorf("%s takes no arguments", sub)}
		}
	case "prune":
		if len(e.args) > 2 {
			return usageError{errors.New("want prune [SIZE]: the size to shrink the disk tier to (default 0: empty it)")}
		}
	default:
		return usageError{fmt.Errorf("unknown cache command %q: want stats, verify or prune", sub)}
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	if !cfg.Cache.Enabled {
		return usageError{errors.New("cache.enabled is false in the config")}
	}
	log := e.logger()
	h, err := provision.NewHost(ctx, cfg, provision.Options{Logger: log})
	if err != nil {
		return err
	}
	c := h.Cache
	if err := c.OpenTiers(ctx); err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "stats":
		st := c.Stats(ctx)
		if e.output == "json" {
			return e.printJSON(st)
		}
		fmt.Fprintf(e.stdout, "listen:    %s\n", st.Listen)
		fmt.Fprintf(e.stdout, "disk:      %d blobs, %s of %s; %d evicted (%s), %d corrupt removed\n",
			st.Disk.Blobs, units.Size(st.Disk.Bytes), units.Size(st.Disk.MaxSize), st.Disk.Evictions, units.Size(st.Disk.EvictedBytes), st.Disk.Corrupt)
		for _, t := range st.Tiers {
			state := "healthy"
			if !t.Healthy {
				state = "unhealthy: " + t.Error
			}
			fmt.Fprintf(e.stdout, "tier:      %s %s\n", t.Name, state)
		}
		return nil
	case "verify":
		term := false
		if f, ok := e.stderr.(*os.File); ok {
			term = logging.IsTerminal(f)
		}
		pr := progress.New(e.stderr, term, log)
		removed, err := c.Disk.Verify(ctx, func(p disk.VerifyProgress) { pr.Update("verify", p.Bytes, p.TotalBytes) })
		pr.Done()
		if err != nil {
			return err
		}
		if e.output == "json" {
			return e.printJSON(map[string]any{"removed": removed})
		}
		for _, d := range removed {
			fmt.Fprintf(e.stdout, "removed corrupt %s\n", d)
		}
		fmt.Fprintf(e.stdout, "verified: %d corrupt blobs removed\n", len(removed))
		if len(removed) > 0 {
			return fmt.Errorf("%d corrupt blobs found and removed; they will be fetched again", len(removed))
		}
		return nil
	default: // prune
		var target units.Size
		if len(e.args) == 2 && e.args[1] != "0" {
			if target, err = units.ParseSize(e.args[1]); err != nil {
				return usageError{err}
			}
		}
		res, err := c.Disk.Prune(ctx, int64(target))
		if err != nil {
			return err
		}
		if e.output == "json" {
			return e.printJSON(res)
		}
		fmt.Fprintf(e.stdout, "pruned %d blobs (%s)\n", res.Blobs, units.Size(res.Bytes))
		return nil
	}
}

func cmdHealth(ctx context.Context, e *env) error {
	if len(e.args) != 0 {
		return usageError{errors.New("health takes no arguments")}
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	h, err := provision.NewHost(ctx, cfg, provision.Options{Logger: e.logger()})
	if err != nil {
		return err
	}
	for {
		res := telemetry.Run(ctx, h.Checks(), 10*time.Second)
		if e.output == "json" {
			if err := e.printJSON(res); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(e.stdout, "%s  %s\n", res.Time.Format(time.RFC3339), res.State)
			for _, c := range res.Checks {
				fmt.Fprintf(e.stdout, "  %-4s %-28s %s\n", c.Status, c.Name, c.Message)
			}
		}
		if !e.watch {
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

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/svc"
)

// This file holds `berth-agent service …`: the agent as a systemd unit or
// a Windows service (internal/svc), and what those commands say on a host
// that has neither.

// serviceConfig is the agent's service: `berth-agent run --config PATH`,
// the config path made absolute, since the service does not start in the
// caller's folder.
func serviceConfig(configPath string) svc.Config {
	exe, err := os.Executable()
	if err != nil {
		exe = "berth-agent"
	}
	if abs, err := filepath.Abs(configPath); err == nil {
		configPath = abs
	}
	return svc.Config{
		Name:        "berth-agent",
		DisplayName: "Berth agent",
		Description: "Keeps this container host's engine installed, current and healthy (Berth).",
		Executable:  exe,
		Arguments:   []string{"run", "--config", configPath},
	}
}

func (f *flags) serviceCommands() []*cli.Command {
	var cs []*cli.Command
	for _, c := range []struct{ name, summary string }{
		{"install", "install the service (restart on failure) or repair its definition; checks the config first"},
		{"uninstall", "remove the service"},
		{"start", "start the service"},
		{"stop", "stop the service (the engine keeps running)"},
		{"restart", "restart the service"},
		{"status", "whether the service is installed and running"},
	} {
		cs = append(cs, &cli.Command{Name: c.name, Summary: c.summary, Run: f.service,
			Help: "Where no service manager runs (Linux without systemd, such as a container), every service command exits 1 and says so."})
	}
	return append(cs, f.configureCommand())
}

// serviceResult is what a service command prints.
type serviceResult struct {
	Service string `json:"service"`
	Done    string `json:"done,omitempty"`
	Change  string `json:"change,omitempty"` // install: created, repaired or unchanged
	Status  string `json:"status,omitempty"` // status
}

func (f *flags) service(ctx context.Context, in *cli.Invocation) error {
	sub := in.Name[strings.LastIndexByte(in.Name, ' ')+1:]
	if sub == "install" {
		if _, err := f.load(); err != nil {
			return err
		}
	}
	s, err := svc.New(serviceConfig(f.config), nil)
	if err != nil {
		return err
	}
	res, err := serviceOp(ctx, s, sub)
	if errors.Is(err, svc.ErrNoServiceManager) {
		return f.noServiceManager()
	}
	if err != nil {
		return err
	}
	return in.Print(res, func(w io.Writer) error {
		var err error
		switch {
		case res.Status != "":
			_, err = fmt.Fprintf(w, "%s service: %s\n", res.Service, res.Status)
		case res.Change != "":
			_, err = fmt.Fprintf(w, "%s service %s: ok (%s)\n", res.Service, sub, res.Change)
		default:
			_, err = fmt.Fprintf(w, "%s service %s: ok\n", res.Service, sub)
		}
		return err
	})
}

// serviceOp runs one service command.
func serviceOp(ctx context.Context, s *svc.Service, sub string) (serviceResult, error) {
	res := serviceResult{Service: s.Name(), Done: sub}
	var err error
	switch sub {
	case "install":
		var ch svc.InstallChange
		ch, err = s.Ensure(ctx)
		res.Change = string(ch)
	case "uninstall":
		err = s.Uninstall(ctx)
	case "start":
		err = s.Start(ctx)
	case "stop":
		err = s.Stop(ctx)
	case "restart":
		err = s.Restart(ctx)
	case "status":
		var st svc.Status
		st, err = s.Status(ctx)
		res.Done, res.Status = "", string(st)
	default:
		err = cli.Usagef("unknown service command %q", sub)
	}
	return res, err
}

// noServiceManager is the error of every service command on a host without
// a service manager: what is missing, and the two ways to run the agent
// there. It names the detached agent when one runs.
func (f *flags) noServiceManager() error {
	running := ""
	if cfg, err := f.load(); err == nil {
		if pid, ok := svc.DetachedPid(filepath.Join(cfg.StateDir(), svc.DetachedPidFile)); ok {
			running = fmt.Sprintf(" A detached agent runs (pid %d).", pid)
		}
	}
	return fmt.Errorf("%w (on Linux the agent's service is a systemd unit, and systemd is not running; "+
		"a container or a host booted by another init has no unit to install)."+
		"%s Run `berth-agent run` under your own supervisor, or let `berth-agent extension enable` start the agent detached",
		svc.ErrNoServiceManager, running)
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/agent/configedit"
	"github.com/berthhq/berth/internal/atomicfile"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/svc"
)

// This file holds `berth-agent service configure`, which the MSI runs as
// its deferred custom action (packaging/msi, docs/msi.md) and an operator
// may run by hand.

// configureFlags are configure's own flags.
type configureFlags struct {
	controlURL, audience, labels string
}

func (f *flags) configureCommand() *cli.Command {
	return &cli.Command{
		Name:    "configure",
		Summary: "write control.url, control.audience and agent.labels into the config; on Windows also the service's recovery, the state folder's ACL and the Event Log source",
		Help: "An empty flag leaves its key as it is; every other key is kept. The result is checked like `config validate` and nothing is written when it fails (exit 2). " +
			"On Windows it also sets the installed service's recovery actions and delayed start, limits the state folder to SYSTEM and Administrators, and registers the Event Log source berth-agent.",
		Run: f.serviceConfigure,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.cfgEdit.controlURL, "control-url", "", "set control.url to `URL`")
			fs.StringVar(&f.cfgEdit.audience, "audience", "", "set control.audience to `AUDIENCE`")
			fs.StringVar(&f.cfgEdit.labels, "labels", "", "replace agent.labels with `K=V,K=V`")
		},
	}
}

// configureResult is what configure prints.
type configureResult struct {
	Config  string `json:"config"`
	Changed bool   `json:"changed"`
	svc.HostSetup
}

func (f *flags) serviceConfigure(ctx context.Context, in *cli.Invocation) error {
	data, err := os.ReadFile(f.config)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", f.config, err)
	}
	out, err := configedit.Apply(f.config, data, configedit.Settings{
		ControlURL: f.cfgEdit.controlURL, Audience: f.cfgEdit.audience, Labels: f.cfgEdit.labels,
	})
	if err != nil {
		return err
	}
	// A missing file is written even when nothing is set: the service
	// the MSI starts needs one to start.
	if err := os.MkdirAll(filepath.Dir(f.config), 0o755); err != nil {
		return fmt.Errorf("create the config's folder: %w", err)
	}
	changed, err := atomicfile.WriteIfChanged(f.config, out, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", f.config, err)
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		return err
	}
	hs, err := svc.SetupHost(ctx, serviceConfig(f.config), cfg.StateDir())
	if err != nil {
		return err
	}
	res := configureResult{Config: f.config, Changed: changed, HostSetup: hs}
	return in.Print(res, func(w io.Writer) error {
		state := "unchanged"
		if changed {
			state = "written"
		}
		_, err := fmt.Fprintf(w, "%s: %s\n", f.config, state)
		if err == nil && hs.Service != "" {
			_, err = fmt.Fprintf(w, "service: %s; state folder ACL: %s; event source: %s\n", hs.Service, hs.StateDirACL, hs.EventSource)
		}
		return err
	})
}

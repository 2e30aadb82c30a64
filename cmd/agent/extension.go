package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/logging"
	"github.com/berthhq/berth/internal/svc"
	"github.com/berthhq/berth/provision/extension"
)

// extensionCommands are the Azure VM extension handler's entry points,
// named by HandlerManifest.json (SPEC "Azure VM extension").
func (f *flags) extensionCommands() []*cli.Command {
	var cs []*cli.Command
	for _, c := range []struct{ name, summary string }{
		{"install", "the guest agent installed the handler (nothing to do until enable)"},
		{"enable", "apply the extension settings: agent config, secrets, agent service started"},
		{"disable", "stop the agent and keep it from starting at boot (the engine keeps running)"},
		{"uninstall", "remove the agent service, its config, secrets and state (the engine's data is kept)"},
		{"update", "take over from the previous version of the handler, in the guest agent's order"},
	} {
		cs = append(cs, &cli.Command{Name: c.name, Summary: c.summary, Run: f.extension})
	}
	return cs
}

func (f *flags) extension(ctx context.Context, in *cli.Invocation) error {
	sub := in.Name[strings.LastIndexByte(in.Name, ' ')+1:]
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	h, err := extension.New(ctx, extension.Options{ConfigPath: f.config, Executable: exe, Log: in.Log, Services: newExtensionService})
	if err != nil {
		return err // the scaffold names the command
	}
	log, closeLog := extensionLog(h.Env.LogFolder, in)
	defer closeLog()
	h.Log = log.With("command", "extension "+sub, "version", h.Version)
	err = h.Locked(ctx, sub)
	if err != nil {
		h.Log.Error("extension command failed", "err", err, "code", int(extension.CodeOf(err)))
		return err
	}
	return in.Print(map[string]string{"extension": sub, "done": "ok"}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "berth-agent extension %s: ok\n", sub)
		return err
	})
}

// extensionLog logs to stderr (the guest agent keeps a command's output)
// and to berth-extension.log in the handler's log folder.
func extensionLog(folder string, in *cli.Invocation) (*slog.Logger, func()) {
	if folder == "" {
		return in.Log, func() {}
	}
	log, closeLog, err := logging.Open(logging.Options{
		Path: filepath.Join(folder, "berth-extension.log"), Rotation: logging.Rotation{MaxMiB: 10, Keep: 3},
		Level: in.LogLevel, Stderr: in.Stderr,
	})
	if err != nil {
		in.Log.Warn("the extension logs to stderr only", "err", err)
		return in.Log, func() {}
	}
	return log, func() { _ = closeLog() }
}

// extensionService fills extension.Service with internal/svc: the service
// under systemd or the SCM, and the detached agent where there is neither.
type extensionService struct {
	s        *svc.Service
	err      error // from svc.New: every call returns it
	detached svc.Detached
}

// detachedStopTimeout is how long a detached agent gets to stop on SIGTERM.
const detachedStopTimeout = 30 * time.Second

func newExtensionService(exe, configPath, stateDir string) extension.Service {
	cfg := serviceConfig(configPath)
	cfg.Executable = exe
	s, err := svc.New(cfg, nil)
	return &extensionService{s: s, err: err, detached: svc.DetachedIn(stateDir, exe, cfg.Arguments...)}
}

// mapErr makes svc's "no service manager" the extension's.
func mapErr(err error) error {
	if errors.Is(err, svc.ErrNoServiceManager) {
		return fmt.Errorf("%w: %w", extension.ErrNoServiceManager, err)
	}
	return err
}

func (e *extensionService) call(ctx context.Context, op func(context.Context) error) error {
	if e.err != nil {
		return e.err
	}
	return mapErr(op(ctx))
}

func (e *extensionService) Install(ctx context.Context) error   { return e.call(ctx, e.s.Install) }
func (e *extensionService) Uninstall(ctx context.Context) error { return e.call(ctx, e.s.Uninstall) }
func (e *extensionService) Start(ctx context.Context) error     { return e.call(ctx, e.s.Start) }
func (e *extensionService) Stop(ctx context.Context) error      { return e.call(ctx, e.s.Stop) }
func (e *extensionService) Restart(ctx context.Context) error   { return e.call(ctx, e.s.Restart) }

func (e *extensionService) Status(ctx context.Context) (string, error) {
	if e.err != nil {
		return "", e.err
	}
	st, err := e.s.Status(ctx)
	return string(st), mapErr(err)
}

func (e *extensionService) StartDetached(ctx context.Context) (int, error) {
	return svc.StartDetached(ctx, e.detached)
}

func (e *extensionService) StopDetached(ctx context.Context) error {
	return svc.StopDetached(ctx, e.detached.PidFile, detachedStopTimeout)
}

func (e *extensionService) DetachedPid() (int, bool) { return svc.DetachedPid(e.detached.PidFile) }

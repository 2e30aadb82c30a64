//go:build !windows

// Command testhandler is a test driver, not product: Berth's extension
// handler (provision/extension) with a recording service in place of
// internal/svc, so that the guest-agent harness can test the handler alone
// on a host without systemd. The service's state is a JSON file named by
// BERTH_TEST_SERVICE_STATE; BERTH_TEST_SERVICE_MANAGER=none makes it a host
// without a service manager.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/berthhq/berth/provision/extension"
)

func main() {
	if len(os.Args) != 3 || os.Args[1] != "extension" {
		fmt.Fprintln(os.Stderr, "usage: testhandler extension install|enable|disable|uninstall|update")
		os.Exit(2)
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	h, err := extension.New(ctx, extension.Options{ConfigPath: os.Getenv("BERTH_CONFIG"), Executable: exe, Log: log,
		Services: func(exe, configPath, stateDir string) extension.Service {
			return &recorder{path: os.Getenv("BERTH_TEST_SERVICE_STATE"), noManager: os.Getenv("BERTH_TEST_SERVICE_MANAGER") == "none", exe: exe}
		}})
	if err == nil {
		err = h.Locked(ctx, os.Args[2])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "extension %s: %v (code %d)\n", os.Args[2], err, extension.CodeOf(err))
		os.Exit(1)
	}
}

// State is what the recorder keeps between the handler's processes.
type State struct {
	Installed  bool     `json:"installed"`
	Running    bool     `json:"running"`
	Detached   bool     `json:"detached"`
	Starts     int      `json:"starts"`
	Restarts   int      `json:"restarts"`
	Executable string   `json:"executable"`
	Calls      []string `json:"calls"`
}

type recorder struct {
	path      string
	noManager bool
	exe       string
}

func (r *recorder) update(call string, f func(*State) error) error {
	var s State
	if data, err := os.ReadFile(r.path); err == nil {
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
	}
	s.Calls = append(s.Calls, call)
	err := f(&s)
	data, _ := json.Marshal(s)
	if werr := os.WriteFile(r.path, data, 0o644); werr != nil {
		return werr
	}
	return err
}

func (r *recorder) managed(call string, f func(*State)) error {
	return r.update(call, func(s *State) error {
		if r.noManager {
			return extension.ErrNoServiceManager
		}
		f(s)
		return nil
	})
}

func (r *recorder) Install(context.Context) error {
	return r.managed("install", func(s *State) { s.Installed, s.Executable = true, r.exe })
}
func (r *recorder) Uninstall(context.Context) error {
	return r.managed("uninstall", func(s *State) { s.Installed, s.Running = false, false })
}
func (r *recorder) Start(context.Context) error {
	return r.managed("start", func(s *State) {
		if !s.Running {
			s.Running, s.Starts = true, s.Starts+1
		}
	})
}
func (r *recorder) Stop(context.Context) error {
	return r.managed("stop", func(s *State) { s.Running = false })
}
func (r *recorder) Restart(context.Context) error {
	return r.managed("restart", func(s *State) { s.Running, s.Restarts = true, s.Restarts+1 })
}
func (r *recorder) Status(context.Context) (string, error) {
	st := ""
	err := r.managed("status", func(s *State) {
		switch {
		case !s.Installed:
			st = extension.ServiceNotInstalled
		case s.Running:
			st = extension.ServiceRunning
		default:
			st = extension.ServiceStopped
		}
	})
	return st, err
}
func (r *recorder) StartDetached(context.Context) (int, error) {
	return 4242, r.update("start-detached", func(s *State) error {
		if !s.Detached {
			s.Detached, s.Starts = true, s.Starts+1
		}
		return nil
	})
}
func (r *recorder) StopDetached(context.Context) error {
	return r.update("stop-detached", func(s *State) error { s.Detached = false; return nil })
}
func (r *recorder) DetachedPid() (int, bool) {
	var s State
	if data, err := os.ReadFile(r.path); err == nil {
		json.Unmarshal(data, &s)
	}
	return 4242, s.Detached
}

package engine

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// fileFlavor renders one file the engine reads at start and one it reads
// on every use.
type fileFlavor struct{ confDir string }

func (*fileFlavor) Name() string                   { return "test" }
func (*fileFlavor) Daemon(dir, conf string) Daemon { return Daemon{Name: "test"} }
func (f *fileFlavor) RenderConfig(in ConfigInput) ([]ConfigFile, error) {
	f.confDir = in.ConfDir
	return []ConfigFile{
		{Path: "config.toml", Data: []byte("root = 1\n")},
		{Path: "certs.d/docker.io/hosts.toml", Data: []byte("server = 1\n"), Live: true},
	}, nil
}
func (*fileFlavor) Probe(context.Context, string) (APIStatus, error) { return APIStatus{}, nil }
func (*fileFlavor) Puller(PullOptions) (Puller, error)               { return nil, ErrNotSupported }

// TestSyncConfigLiveFiles: a drifted live file is rewritten without
// asking for a restart; a drifted start-time file asks for one.
func TestSyncConfigLiveFiles(t *testing.T) {
	state := t.TempDir()
	fl := &fileFlavor{}
	m := &Manager{o: Options{Flavor: fl, StateDir: state}, log: slog.New(slog.DiscardHandler)}
	if changed, err := m.syncConfig(); err != nil || !changed {
		t.Fatalf("first sync: changed=%v err=%v, want a change", changed, err)
	}
	if want := ConfigDir(state, "test"); fl.confDir != want {
		t.Errorf("ConfigInput.ConfDir = %q, want %q", fl.confDir, want)
	}
	live := filepath.Join(fl.confDir, "certs.d", "docker.io", "hosts.toml")
	if err := os.WriteFile(live, []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := m.syncConfig(); err != nil || changed {
		t.Fatalf("sync after a live file drifted: changed=%v err=%v, want no restart", changed, err)
	}
	if b, _ := os.ReadFile(live); string(b) != "server = 1\n" {
		t.Errorf("live file not repaired: %q", b)
	}
	if err := os.WriteFile(filepath.Join(fl.confDir, "config.toml"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := m.syncConfig(); err != nil || !changed {
		t.Fatalf("sync after config.toml drifted: changed=%v err=%v, want a restart", changed, err)
	}
}

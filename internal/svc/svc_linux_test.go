package svc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recordSystemctl stands in for systemctl, which needs a running systemd
// (absent here); it records the calls Install makes.
type recordSystemctl struct{ calls []string }

func (r *recordSystemctl) run(_ context.Context, args ...string) error {
	r.calls = append(r.calls, strings.Join(args, " "))
	return nil
}

// TestInstallWritesRepairsAndKeepsTheUnit: kardianos/service's own Install
// fails with "Init already exists" on the second run and leaves a drifted
// unit as it is; Install must be idempotent and rewrite a drifted unit.
func TestInstallWritesRepairsAndKeepsTheUnit(t *testing.T) {
	dir := t.TempDir()
	rec := &recordSystemctl{}
	s, err := New(standard("/usr/bin/berth-agent"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.unitDir, s.systemctl = dir, rec.run
	want, err := RenderUnit(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "berth-agent.service")
	steps := []struct {
		name   string
		before func()
		change InstallChange
		calls  []string
	}{
		{"fresh host", func() {}, Created, []string{"daemon-reload", "enable berth-agent.service"}},
		{"again", func() {}, Unchanged, []string{"enable berth-agent.service"}},
		{"edited by hand", func() {
			os.WriteFile(path, []byte(strings.Replace(string(want), "Restart=always", "Restart=no", 1)), 0o644)
		}, Repaired, []string{"daemon-reload", "enable berth-agent.service"}},
		{"emptied", func() { os.WriteFile(path, nil, 0o644) }, Repaired, []string{"daemon-reload", "enable berth-agent.service"}},
	}
	for _, st := range steps {
		rec.calls = nil
		st.before()
		ch, err := s.install(context.Background())
		if err != nil {
			t.Fatalf("%s: install: %v", st.name, err)
		}
		if ch != st.change {
			t.Errorf("%s: change = %q; want %q", st.name, ch, st.change)
		}
		if diff := cmp.Diff(st.calls, rec.calls); diff != "" {
			t.Errorf("%s: systemctl calls (-want +got):\n%s", st.name, diff)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: unit on disk = %q, %v; want the rendered unit", st.name, got, err)
		}
	}
}

func TestInstallReportsSystemctlFailure(t *testing.T) {
	s, err := New(standard("/usr/bin/berth-agent"), nil)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("systemctl daemon-reload: exit status 1: Access denied")
	s.unitDir = t.TempDir()
	s.systemctl = func(context.Context, ...string) error { return boom }
	if _, err := s.install(context.Background()); !errors.Is(err, boom) {
		t.Errorf("install = %v; want %v", err, boom)
	}
}

// TestNoServiceManagerWithoutSystemd: this machine runs no systemd (as a
// container); kardianos/service would still pick SysV from /etc/init.d and
// "install" a script no init runs.
func TestNoServiceManagerWithoutSystemd(t *testing.T) {
	if hasServiceManager() {
		t.Skip("systemd runs here")
	}
	s, err := New(standard("/usr/bin/berth-agent"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func(context.Context) error{
		"Install": s.Install, "Uninstall": s.Uninstall, "Start": s.Start, "Stop": s.Stop, "Restart": s.Restart,
		"Status": func(ctx context.Context) error { _, err := s.Status(ctx); return err },
	} {
		if err := call(context.Background()); !errors.Is(err, ErrNoServiceManager) {
			t.Errorf("%s = %v; want ErrNoServiceManager", name, err)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name, line   string
		state, start string
		wantErr      bool
	}{
		{"plain", "4711 (berth-agent) S 1 4711 4711 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 9 0 123456 0 0", "S", "123456", false},
		{"name with spaces and parens", "4711 (a) b) (c) R 1 4711 4711 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 9 0 99 0", "R", "99", false},
		{"zombie", "4711 (x) Z 1 4711 4711 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 9 0 7 0", "Z", "7", false},
		{"truncated", "4711 (x) S 1 2 3", "", "", true},
		{"no name", "4711 x S 1", "", "", true},
		{"start not a number", "4711 (x) S 1 4711 4711 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 9 0 ab 0", "", "", true},
		{"empty", "", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state, start, err := parseProcStat(tc.line)
			if (err != nil) != tc.wantErr || state != tc.state || start != tc.start {
				t.Errorf("parseProcStat = %q, %q, %v; want %q, %q, error %v", state, start, err, tc.state, tc.start, tc.wantErr)
			}
		})
	}
}

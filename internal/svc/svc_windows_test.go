package svc

import (
	"context"
	"flag"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/windows/svc/mgr"
)

// serviceChild, when set, makes TestServiceChild act as the service of
// that name: the SCM starts this test binary with it.
var serviceChild = flag.String("berth.service-child", "", "run as the named test service (internal)")

// needWindowsCI gates tests that install real services: they need an
// administrator and change the host, so they run in the Windows CI
// workflow only.
func needWindowsCI(t *testing.T) {
	t.Helper()
	if os.Getenv("BERTH_WINDOWS_CI") != "true" {
		t.Skip("installs a Windows service; set BERTH_WINDOWS_CI=true on a throwaway Windows host")
	}
}

func TestServiceChild(t *testing.T) {
	if *serviceChild == "" {
		t.Skip("only runs under the SCM")
	}
	s, err := New(Config{Name: *serviceChild}, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
}

// TestEscapeArgMatchesSyscall: the neutral quoting must be what
// mgr.CreateService writes, or every Install would see drift.
func TestEscapeArgMatchesSyscall(t *testing.T) {
	for _, a := range []string{"", "run", `C:\Program Files\Berth\a.exe`, `a"b`, `a\"b`, `with space\`, "tab\there", `\\server\share\`, `"`, `\`} {
		if got, want := escapeArg(a), syscall.EscapeArg(a); got != want {
			t.Errorf("escapeArg(%q) = %s; syscall.EscapeArg = %s", a, got, want)
		}
	}
}

func waitStatus(t *testing.T, s *Service, want Status) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.Status(context.Background())
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status = %q, %v; want %q", got, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestWindowsServiceLifecycle(t *testing.T) {
	needWindowsCI(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("berth-agent-test-%d", os.Getpid())
	s, err := New(Config{
		Name:       name,
		Executable: exe,
		Arguments:  []string{"-test.run=^TestServiceChild$", "-berth.service-child=" + name},
	}, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Uninstall(context.Background()); err != nil {
			t.Errorf("Uninstall: %v", err)
		}
	})
	waitStatus(t, s, StatusStopped)
	if err := s.Install(ctx); err != nil {
		t.Errorf("second Install: %v", err)
	}

	m, err := mgr.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Disconnect()
	sv, err := m.OpenService(name)
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	// The SCM holds the definition Berth renders (golden file), and a
	// definition changed behind Berth's back is repaired.
	want := WindowsService(s.cfg)
	got, err := readDefinition(sv)
	if err != nil {
		t.Fatal(err)
	}
	if drift := want.Drift(got); drift != nil {
		t.Errorf("installed service drifts from its definition in %v:\n%+v", drift, got)
	}
	c, err := sv.Config()
	if err != nil {
		t.Fatal(err)
	}
	c.StartType, c.DelayedAutoStart = mgr.StartManual, false
	if err := sv.UpdateConfig(c); err != nil {
		t.Fatal(err)
	}
	if err := sv.SetRecoveryActionsOnNonCrashFailures(false); err != nil {
		t.Fatal(err)
	}
	if ch, err := s.Ensure(ctx); err != nil || ch != Repaired {
		t.Errorf("Ensure on a drifted service = %q, %v; want repaired", ch, err)
	}
	if got, err = readDefinition(sv); err != nil || want.Drift(got) != nil {
		t.Errorf("after repair: drift %v, %v", want.Drift(got), err)
	}
	if ch, err := s.Ensure(ctx); err != nil || ch != Unchanged {
		t.Errorf("Ensure again = %q, %v; want unchanged", ch, err)
	}

	acts, err := sv.RecoveryActions()
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 3 {
		t.Fatalf("recovery actions = %+v; want 3", acts)
	}
	for i, a := range acts {
		if a.Type != mgr.ServiceRestart || a.Delay != recoveryDelays[i] {
			t.Errorf("recovery action %d = %+v; want restart after %v", i, a, recoveryDelays[i])
		}
	}
	if p, err := sv.ResetPeriod(); err != nil || p != 86400 {
		t.Errorf("reset period = %d, %v; want 86400", p, err)
	}
	if on, err := sv.RecoveryActionsOnNonCrashFailures(); err != nil || !on {
		t.Errorf("recovery on non-crash failures = %v, %v; want true", on, err)
	}

	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitStatus(t, s, StatusRunning)
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	waitStatus(t, s, StatusRunning)
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitStatus(t, s, StatusStopped)
	if err := s.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := s.Uninstall(ctx); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	waitStatus(t, s, StatusNotInstalled)
}

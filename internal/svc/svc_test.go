package svc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kardianos/service"
)

func TestMapStatus(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		st      service.Status
		err     error
		want    Status
		wantErr bool
	}{
		{"running", service.StatusRunning, nil, StatusRunning, false},
		{"stopped", service.StatusStopped, nil, StatusStopped, false},
		{"not installed", service.StatusUnknown, service.ErrNotInstalled, StatusNotInstalled, false},
		{"error", service.StatusUnknown, boom, StatusUnknown, true},
		{"unknown without error", service.StatusUnknown, nil, StatusUnknown, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mapStatus(tc.st, tc.err)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("mapStatus(%v, %v) = %q, %v; want %q, error %v", tc.st, tc.err, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestNew(t *testing.T) {
	// A nil run function is for control only (service install, status…):
	// New accepts it, and Run refuses to run nothing.
	c, err := New(Config{}, nil)
	if err != nil {
		t.Fatalf("New with a nil run function: %v", err)
	}
	if err := c.runForeground(context.Background()); err == nil {
		t.Error("Run of a control-only service succeeded")
	}
	s, err := New(Config{}, func(context.Context) error { return nil })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if s.Name() != "berth-agent" {
		t.Errorf("Name() = %q; want berth-agent", s.Name())
	}
}

func TestControlCallsHonourContext(t *testing.T) {
	s, err := New(Config{}, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	want := context.Canceled
	if s.svc == nil {
		want = ErrNoServiceManager
	}
	calls := map[string]func(context.Context) error{
		"Install": s.Install, "Uninstall": s.Uninstall, "Start": s.Start,
		"Stop": s.Stop, "Restart": s.Restart,
		"Status": func(ctx context.Context) error { _, err := s.Status(ctx); return err },
	}
	for name, call := range calls {
		if err := call(ctx); !errors.Is(err, want) {
			t.Errorf("%s with a cancelled context = %v; want %v", name, err, want)
		}
	}
}

// newProgram returns a program around run, with a short stop timeout.
func newProgram(run func(context.Context) error) (*program, chan struct{}) {
	early := make(chan struct{}, 1)
	p := &program{
		run:         run,
		stopTimeout: 200 * time.Millisecond,
		log:         Config{}.withDefaults().Logger,
		onEarlyExit: func() { early <- struct{}{} },
	}
	return p, early
}

func TestProgramStartDoesNotBlockAndStopWaits(t *testing.T) {
	started := make(chan struct{}, 2)
	var sawCancel bool
	p, early := newProgram(func(ctx context.Context) error {
		started <- struct{}{}
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // clean-up work Stop must wait for
		sawCancel = true
		return ctx.Err()
	})
	if err := p.Start(nil); err != nil {
		t.Fatalf("Start: %v", err)
	}
	<-started
	if err := p.Start(nil); err == nil {
		t.Error("second Start succeeded")
	}
	if err := p.Stop(nil); err != nil {
		t.Fatalf("Stop = %v; want nil for a run that returns context.Canceled", err)
	}
	if !sawCancel {
		t.Error("Stop returned before the run function")
	}
	select {
	case <-early:
		t.Error("an asked-for stop counted as an early exit")
	default:
	}
	// Stopped programs can start again (Windows Restart in-process).
	if err := p.Start(nil); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	if err := p.Stop(nil); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func TestProgramStopReturnsRunError(t *testing.T) {
	boom := errors.New("flush outbox: disk full")
	p, _ := newProgram(func(ctx context.Context) error {
		<-ctx.Done()
		return boom
	})
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(nil); !errors.Is(err, boom) {
		t.Errorf("Stop = %v; want %v", err, boom)
	}
}

func TestProgramStopTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	p, _ := newProgram(func(ctx context.Context) error {
		<-release // ignores its context
		return nil
	})
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Stop(nil); err == nil {
		t.Error("Stop of a run function that ignores its context succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v; want about the stop timeout", d)
	}
}

func TestProgramEarlyExit(t *testing.T) {
	boom := errors.New("open state db: locked")
	for _, tc := range []struct {
		name string
		ret  error
		want error
	}{
		{"error", boom, boom},
		{"nil", nil, ErrExitedEarly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, early := newProgram(func(context.Context) error { return tc.ret })
			if err := p.Start(nil); err != nil {
				t.Fatal(err)
			}
			select {
			case <-early:
			case <-time.After(5 * time.Second):
				t.Fatal("early exit not reported")
			}
			waited := make(chan struct{})
			go func() { p.wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(5 * time.Second):
				t.Fatal("RunWait did not return after the run function did")
			}
			if err := p.Stop(nil); !errors.Is(err, tc.want) {
				t.Errorf("Stop = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestRunForegroundParentCancel(t *testing.T) {
	s, err := New(Config{}, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if err := s.runForeground(ctx); err != nil {
		t.Errorf("runForeground = %v; want nil after a clean stop", err)
	}
}

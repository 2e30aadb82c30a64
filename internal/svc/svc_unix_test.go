//go:build !windows

package svc

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// guardSignals keeps the signals the tests send to themselves from
// killing the test binary while no handler of the code under test is
// installed yet.
func guardSignals(t *testing.T) {
	c := make(chan os.Signal, 16)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	t.Cleanup(func() { signal.Stop(c) })
}

func TestRunForegroundStopsOnSIGTERM(t *testing.T) {
	guardSignals(t)
	running := make(chan struct{})
	s, err := New(Config{}, func(ctx context.Context) error {
		close(running)
		<-ctx.Done()
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.runForeground(context.Background()) }()
	<-running
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runForeground = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("runForeground did not return on SIGTERM")
	}
}

func TestProgramWaitReturnsOnSignal(t *testing.T) {
	guardSignals(t)
	p, _ := newProgram(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { p.wait(); close(waited) }()
	// wait installs its handler before it blocks; give it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case <-waited:
			if err := p.Stop(nil); err != nil {
				t.Errorf("Stop = %v", err)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("RunWait did not return on SIGINT")
		}
	}
}

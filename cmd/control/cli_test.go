package main

import (
	"log/slog"
	"testing"

	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/internal/cli"
)

func TestTokenSubject(t *testing.T) {
	for _, c := range []struct {
		agent, operator string
		role            store.Role
		subject         string
		ok              bool
	}{
		{"vm-1", "", store.RoleAgent, "vm-1", true},
		{"", "alice", store.RoleOperator, "alice", true},
		{"vm-1", "alice", "", "", false},
		{"", "", "", "", false},
		{"a b", "", "", "", false},
		{"vm/1", "", "", "", false},
	} {
		role, subject, err := tokenSubject(c.agent, c.operator)
		if role != c.role || subject != c.subject || (err == nil) != c.ok {
			t.Errorf("tokenSubject(%q, %q) = %q, %q, %v; want %q, %q, ok %v", c.agent, c.operator, role, subject, err, c.role, c.subject, c.ok)
		}
	}
}

func TestServerOr(t *testing.T) {
	env := func(v string) func(string) string { return func(string) string { return v } }
	for _, c := range []struct {
		flag, env, want string
	}{
		{"http://a:1", "http://b:2", "http://a:1"},
		{"", "http://b:2", "http://b:2"},
		{"", "", client.DefaultServer},
	} {
		if got := serverOr(c.flag, env(c.env)); got != c.want {
			t.Errorf("serverOr(%q, env %q) = %q, want %q", c.flag, c.env, got, c.want)
		}
	}
}

func TestRetryLogger(t *testing.T) {
	for _, c := range []struct {
		level  string
		logged bool
	}{
		{"debug", true},
		{"info", true},
		{"warn", false},
		{"error", false},
	} {
		in := &cli.Invocation{LogLevel: c.level, Log: slog.New(slog.DiscardHandler)}
		if got := retryLogger(in) != nil; got != c.logged {
			t.Errorf("retryLogger at %s: logged %v, want %v", c.level, got, c.logged)
		}
	}
}

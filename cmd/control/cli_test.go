package main

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/packaging/tufrepo"
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

func TestErrorsThatAreUsage(t *testing.T) {
	notRepo := fmt.Errorf("nowhere: %w", tufrepo.ErrNotRepository)
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"400", &client.APIError{Status: 400, Code: "bad_request"}, cli.ExitUsage},
		{"401", &client.APIError{Status: 401}, cli.ExitFailure},
		{"404", fmt.Errorf("host: %w", &client.APIError{Status: 404}), cli.ExitFailure},
		{"network", errors.New("connection refused"), cli.ExitFailure},
	} {
		if got := cli.ExitCode(badRequestIsUsage(c.err)); got != c.want {
			t.Errorf("badRequestIsUsage(%s): exit %d, want %d", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"not a repository", notRepo, cli.ExitUsage},
		{"conflict", fmt.Errorf("add: %w", tufrepo.ErrConflict), cli.ExitFailure},
	} {
		if got := cli.ExitCode(notRepoIsUsage(c.err)); got != c.want {
			t.Errorf("notRepoIsUsage(%s): exit %d, want %d", c.name, got, c.want)
		}
	}
}

// TestMemoryLimit: serve's soft limit stays gcSlack above what is live
// (the live heap and the memory that is not heap), so the collector never
// chases memory it cannot free, whatever the metrics say.
func TestMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name string
		v    []uint64 // live, total, heap objects, unused, free, released
		want int64
	}{
		{"idle", []uint64{8 * mib, 40 * mib, 10 * mib, 2 * mib, 10 * mib, 8 * mib}, (8+10)*mib + gcSlack},
		{"10,000 polls", []uint64{35 * mib, 300 * mib, 60 * mib, 5 * mib, 80 * mib, 20 * mib}, (35+135)*mib + gcSlack},
		{"heap classes over the total", []uint64{8 * mib, 10 * mib, 20 * mib, 0, 0, 0}, 8*mib + gcSlack},
	} {
		if got := memoryLimit(c.v); got != c.want {
			t.Errorf("%s: limit %d MiB, want %d MiB", c.name, got/mib, c.want/mib)
		}
	}
}

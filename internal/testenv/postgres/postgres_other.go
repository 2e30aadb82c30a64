//go:build !linux

package postgres

import (
	"errors"
	"testing"

	"github.com/berthhq/berth/internal/testenv"
)

// Start is StartWith with default options.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith starts PostgreSQL only on Linux, where the tests and
// CI run it; elsewhere the test is skipped (failed under CI=true).
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	testenv.Need(t, "postgresql", errors.New("the test harness starts PostgreSQL on Linux only"))
	return nil
}

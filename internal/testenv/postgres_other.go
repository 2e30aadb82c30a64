//go:build !linux

package testenv

import (
	"errors"
	"testing"
)

// StartPostgres is StartPostgresWith with default options.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	return StartPostgresWith(t, PostgresOptions{})
}

// StartPostgresWith starts PostgreSQL only on Linux, where the tests and
// CI run it; elsewhere the test is skipped (failed under CI=true).
func StartPostgresWith(t testing.TB, o PostgresOptions) *Postgres {
	t.Helper()
	Need(t, "postgresql", errors.New("the test harness starts PostgreSQL on Linux only"))
	return nil
}

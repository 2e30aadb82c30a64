// Package postgres starts a PostgreSQL server for a test (or a test
// binary): a fresh cluster on a free loopback port with trust
// authentication, on Linux.
package postgres

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL server private to a test (or a test
// binary), listening on loopback with trust authentication.
type Server struct {
	// DSN connects as the superuser "postgres" to the database "postgres":
	// postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
	DSN string
	// Addr is the loopback host:port the server listens on.
	Addr string

	dbs atomic.Int64
}

// Options tune StartWith.
type Options struct {
	// Fsync runs the server with fsync=on, as production does: benchmarks
	// of commit throughput need it to be honest. Off by default, since a
	// test's data is thrown away and a crash-safe disk only slows the
	// tests down.
	Fsync bool
}

// NewDatabase creates a fresh, empty database on the server and returns
// its DSN, so that each test starts from nothing on a shared server.
func (p *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", p.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN)
	if err != nil {
		t.Fatalf("postgres: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("postgres: create database %s: %v", name, err)
	}
	u, err := url.Parse(p.DSN)
	if err != nil {
		t.Fatalf("postgres: parse DSN: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

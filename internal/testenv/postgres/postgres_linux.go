//go:build linux

package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/berthhq/berth/internal/testenv"
)

// Start is StartWith with default options (fsync off).
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith initializes a fresh PostgreSQL cluster in a temporary
// folder, starts it on a free loopback port, waits until it accepts
// connections, and stops and removes it when t ends. The server binaries
// come from $BERTH_POSTGRES_BIN, else the newest /usr/lib/postgresql/*/bin,
// else PATH; when missing the test is skipped (failed under CI=true), as
// with -short.
//
// PostgreSQL refuses to run as root, so under root it runs as the user
// "postgres" (which the Debian package creates), and the cluster's folder
// is that user's.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("PostgreSQL is a real component: skipped with -short")
	}
	bin, err := postgresBin()
	testenv.Need(t, "postgresql", err)
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		testenv.Need(t, "postgresql (user postgres, to run it under root)", err)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parents are private to root, and the server's
	// user must be able to reach the folder.
	dir, err := os.MkdirTemp("", "berth-postgres-")
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("postgres: chown %s: %v", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	// C locale: byte order, the same everywhere; --no-sync: a test
	// cluster need not survive a power cut.
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("postgres: initdb: %v: %s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := start(t, bin, dir, data, cred, o)
		if err == nil {
			return p
		}
		lastErr = err // most likely the free port was taken meanwhile
	}
	t.Fatalf("start postgres: %v", lastErr)
	return nil
}

func postgresBin() (string, error) {
	if b := os.Getenv("BERTH_POSTGRES_BIN"); b != "" {
		if _, err := os.Stat(filepath.Join(b, "postgres")); err != nil {
			return "", fmt.Errorf("BERTH_POSTGRES_BIN: %w", err)
		}
		return b, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	slices.SortFunc(found, func(a, b string) int { // newest major version first
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return vb - va
	})
	if len(found) > 0 {
		return filepath.Dir(found[0]), nil
	}
	p, err := exec.LookPath("postgres")
	if err != nil {
		return "", err
	}
	return filepath.Dir(p), nil
}

func start(t testing.TB, bin, dir, data string, cred *syscall.Credential, o Options) (*Server, error) {
	addr := testenv.FreePort(t)
	host, port, _ := net.SplitHostPort(addr)
	fsync := "off"
	if o.Fsync {
		fsync = "on"
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", port,
		"-c", "listen_addresses="+host, "-c", "unix_socket_directories="+dir,
		"-c", "fsync="+fsync, "-c", "max_connections=200", "-c", "shared_buffers=128MB")
	cmd.Dir = dir
	// Pdeathsig: a test binary that dies takes its server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	out := &testenv.Buffer{Max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		// SIGINT is PostgreSQL's fast shutdown: it ends the sessions and
		// stops cleanly.
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	p := &Server{Addr: addr, DSN: "postgres://postgres@" + addr + "/postgres?sslmode=disable"}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("postgres exited early (%v): %s", err, out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, p.DSN)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("postgres did not answer on %s within 60s: %v: %s", addr, err, out.String())
		}
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(stop)
	return p, nil
}

package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthhq/berth/internal/testenv/postgres"

	"github.com/berthhq/berth/control/store"
)

// A DSN that names no store this package can open is ErrBadDSN (a usage
// error for the CLI); one that merely cannot be reached is not.
func TestOpenBadDSNIsMarked(t *testing.T) {
	for _, c := range []struct {
		dsn string
		bad bool
	}{
		{"control.db", true},
		{"mysql://u@h/db", true},
		{"sqlite://", true},
		{"sqlite://x.db?mode=ro", true},
		{"sqlite://:memory:", true},
		{"postgres://u:pw@127.0.0.1:bad/db", true},
		{"sqlite://" + filepath.Join(t.TempDir(), "no", "such", "\x00", "x.db"), false},
	} {
		s, err := store.Open(context.Background(), c.dsn, store.Options{})
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", c.dsn)
			continue
		}
		if got := errors.Is(err, store.ErrBadDSN); got != c.bad {
			t.Errorf("Open(%q) = %v: ErrBadDSN %v, want %v", c.dsn, err, got, c.bad)
		}
	}
}

// Options.Existing opens only a store that exists and creates nothing.
func TestOpenExistingSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "sub", "c.db")
	if _, err := store.Open(ctx, "sqlite://"+missing, store.Options{Existing: true}); !errors.Is(err, store.ErrNoStore) {
		t.Fatalf("Open(missing, Existing) = %v, want ErrNoStore", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing, Existing) made its folder: %v", err)
	}
	made := filepath.Join(dir, "c.db")
	s, err := store.Open(ctx, "sqlite://"+made, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = store.Open(ctx, "sqlite://"+made, store.Options{Existing: true})
	if err != nil {
		t.Fatalf("Open(existing, Existing) = %v", err)
	}
	s.Close()
}

func TestOpenExistingPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := postgres.Start(t).NewDatabase(t)
	if _, err := store.Open(ctx, dsn, store.Options{Existing: true}); !errors.Is(err, store.ErrNoStore) {
		t.Fatalf("Open(empty database, Existing) = %v, want ErrNoStore", err)
	}
	// Nothing was created: the check still fails.
	if _, err := store.Open(ctx, dsn, store.Options{Existing: true}); !errors.Is(err, store.ErrNoStore) {
		t.Fatalf("second Open(empty database, Existing) = %v, want ErrNoStore", err)
	}
	s, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = store.Open(ctx, dsn, store.Options{Existing: true})
	if err != nil {
		t.Fatalf("Open(store, Existing) = %v", err)
	}
	s.Close()
}

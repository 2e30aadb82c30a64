// Package statedb is the agent's durable state in agent.db: small JSON
// records in named buckets, in one bbolt file.
//
// The file is opened for each transaction and closed right after, because
// bbolt locks the whole file while it is open and several processes use it:
// the daemon (`berth-agent run`) and the one-shot commands (`berth-agent
// engine upgrade`) an operator runs beside it. Opening costs well under a
// millisecond; holding it would make every command wait for the daemon.
//
// A damaged file (a power cut on a disk that lies about flushes, a
// truncation, stray writes) must not stop the agent: bbolt panics on some
// damage and refuses other, so every open and transaction is protected (see
// damage.go), and a file found damaged is moved aside as
// agent.db.damaged-<time> and replaced by an empty one that remembers why
// (LastRebuild). What the file held is rebuilt by its owners from what is
// true on the host: the agent id from IMDS, the engine's active version
// from the daemon that runs, the cache index from the blobs on disk.
package statedb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DB is agent.db. The zero value is not usable; call Open.
type DB struct {
	path string
	log  *slog.Logger
	now  func() time.Time
	// replaceMu makes the goroutines of this process replace a damaged
	// file one at a time; other processes are told apart by the file's
	// identity (see replaceDamaged).
	replaceMu sync.Mutex
}

// Options tune OpenWith.
type Options struct {
	// Logger is told when a damaged file is replaced; nil discards.
	Logger *slog.Logger
	// Now names the damaged copy and dates the rebuild; time.Now when nil.
	Now func() time.Time
}

// Open is OpenWith without a logger.
func Open(path string) (*DB, error) {
	return OpenWith(context.Background(), path, Options{})
}

// OpenWith returns the database at path, creating its folder if needed; the
// file itself is created by the first write. An existing file is checked
// through (every page the records use, and bbolt's consistency check), and
// a damaged one is moved aside and replaced at once, before anything reads
// it. A file the agent cannot use (a directory in its place, a file it may
// not write) is not an error here: the DB is returned, and every
// transaction fails with ErrUnusable naming the path and the fix, so that
// the daemon keeps running and reports it.
func OpenWith(ctx context.Context, path string, o Options) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	d := &DB{path: path, log: o.Logger, now: o.Now}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	if err := d.check(ctx); errors.Is(err, ErrDamaged) {
		if err := d.replaceDamaged(ctx, err); err != nil {
			d.log.Error("agent.db is damaged and could not be replaced", "path", path, "err", err)
		}
	}
	return d, nil
}

// Path returns the file's path.
func (d *DB) Path() string { return d.path }

// lockWait bounds how long a transaction waits for another process that has
// the file open. Every holder closes it within milliseconds, so a long wait
// means a stuck process, which the error names.
const lockWait = 30 * time.Second

// open opens the file for one transaction. A file found damaged is
// replaced, and the new one opened.
func (d *DB) open(ctx context.Context, readOnly bool) (*bolt.DB, error) {
	db, err := d.openOnce(ctx, readOnly)
	if !errors.Is(err, ErrDamaged) {
		return db, err
	}
	if err := d.replaceDamaged(ctx, err); err != nil {
		return nil, err
	}
	return d.openOnce(ctx, readOnly)
}

func (d *DB) openOnce(ctx context.Context, readOnly bool) (*bolt.DB, error) {
	wait := lockWait
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = max(time.Until(dl), time.Millisecond)
	}
	switch fi, err := os.Stat(d.path); {
	case errors.Is(err, os.ErrNotExist) && readOnly:
		return nil, os.ErrNotExist
	case err == nil && !fi.Mode().IsRegular():
		return nil, notAFile(d.path, fi.Mode())
	case err == nil:
		if err := d.preflight(); err != nil {
			return nil, fmt.Errorf("state database %s: %w", d.path, err)
		}
	}
	db, err := openProtected(d.path, &bolt.Options{Timeout: wait, ReadOnly: readOnly, PreLoadFreelist: true})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("state database %s is held by another process for over %s: is a berth-agent stuck? %w", d.path, wait, err)
	case errors.Is(err, ErrDamaged):
		return nil, fmt.Errorf("state database %s: %w", d.path, err)
	case err != nil:
		return nil, classifyOpenErr(d.path, err)
	}
	return db, nil
}

// Get reads the record at bucket/key into v. It reports false when there is
// no such record.
func (d *DB) Get(ctx context.Context, bucket, key string, v any) (bool, error) {
	var found bool
	err := d.tx(ctx, true, func(tx *bolt.Tx) error {
		found = false
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		raw := b.Get([]byte(key))
		if raw == nil {
			return nil
		}
		found = true
		return json.Unmarshal(raw, v)
	})
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s/%s from %s: %w", bucket, key, d.path, err)
	}
	return found, nil
}

// Put writes v as the record at bucket/key, durably.
func (d *DB) Put(ctx context.Context, bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return d.Update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), raw)
	})
}

// Delete removes the record at bucket/key if it exists.
func (d *DB) Delete(ctx context.Context, bucket, key string) error {
	return d.Update(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(bucket)); b != nil {
			return b.Delete([]byte(key))
		}
		return nil
	})
}

// Update runs fn in one read-write transaction, committed durably when fn
// returns nil. When the file turns out damaged during fn, it is replaced
// and fn runs again on the new, empty one; fn must not keep effects of a
// run that failed.
func (d *DB) Update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := d.tx(ctx, false, fn); err != nil {
		return fmt.Errorf("update state database %s: %w", d.path, err)
	}
	return nil
}

// tx runs fn in one transaction, protected. A panic or a fault during it
// is taken for damage only when a check of the file finds some (it may be
// a bug of fn's); then the file is replaced and fn runs once more.
func (d *DB) tx(ctx context.Context, readOnly bool, fn func(tx *bolt.Tx) error) error {
	for attempt := 0; ; attempt++ {
		ran, _ := os.Lstat(d.path)
		db, err := d.open(ctx, readOnly)
		if err != nil {
			return err
		}
		err = runProtected(db, readOnly, fn)
		var p *panicError
		if attempt > 0 || !errors.As(err, &p) {
			return err
		}
		cerr := d.check(ctx)
		if now, serr := os.Lstat(d.path); serr != nil || ran == nil || !os.SameFile(ran, now) {
			continue // replaced meanwhile, by another goroutine that met the same damage
		}
		if !errors.Is(cerr, ErrDamaged) {
			return err // the file is sound: the panic was fn's own
		}
		if rerr := d.replaceDamaged(ctx, cerr); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
}

// runProtected runs fn in a transaction of db and closes db.
func runProtected(db *bolt.DB, readOnly bool, fn func(tx *bolt.Tx) error) error {
	err := protect(func() error {
		if readOnly {
			return db.View(fn)
		}
		return db.Update(fn)
	})
	// Closing a database whose transaction panicked may panic too.
	if cerr := protect(db.Close); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

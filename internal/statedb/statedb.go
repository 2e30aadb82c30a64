// Package statedb is the agent's durable state in agent.db: small JSON
// records in named buckets, in one bbolt file.
//
// The file is opened for each transaction and closed right after, because
// bbolt locks the whole file while it is open and several processes use it:
// the daemon (`berth-agent run`) and the one-shot commands (`berth-agent
// engine upgrade`) an operator runs beside it. Opening costs well under a
// millisecond; holding it would make every command wait for the daemon.
package statedb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DB is agent.db. The zero value is not usable; call Open.
type DB struct {
	path string
}

// Open returns the database at path, creating its folder if needed. The file
// itself is created by the first write.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	return &DB{path: path}, nil
}

// Path returns the file's path.
func (d *DB) Path() string { return d.path }

// lockWait bounds how long a transaction waits for another process that has
// the file open. Every holder closes it within milliseconds, so a long wait
// means a stuck process, which the error names.
const lockWait = 30 * time.Second

func (d *DB) open(ctx context.Context, readOnly bool) (*bolt.DB, error) {
	wait := lockWait
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = max(time.Until(dl), time.Millisecond)
	}
	if readOnly {
		if _, err := os.Stat(d.path); errors.Is(err, os.ErrNotExist) {
			return nil, os.ErrNotExist
		}
	}
	db, err := bolt.Open(d.path, 0o600, &bolt.Options{Timeout: wait, ReadOnly: readOnly})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("state database %s is held by another process for over %s: is a berth-agent stuck? %w", d.path, wait, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", d.path, err)
	}
	return db, nil
}

// Get reads the record at bucket/key into v. It reports false when there is
// no such record.
func (d *DB) Get(ctx context.Context, bucket, key string, v any) (bool, error) {
	db, err := d.open(ctx, true)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer db.Close()
	var found bool
	err = db.View(func(tx *bolt.Tx) error {
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
// returns nil.
func (d *DB) Update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	db, err := d.open(ctx, false)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		return fmt.Errorf("update state database %s: %w", d.path, err)
	}
	return nil
}

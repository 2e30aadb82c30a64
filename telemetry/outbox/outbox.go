// Package outbox is the agent's durable, bounded queue of reports: every
// heartbeat and event is written here, in agent.db, before it is sent, and
// deleted only when the control endpoint acknowledges it. An endpoint that
// is down for hours loses nothing; a killed agent loses nothing it wrote.
//
// Each record gets the agent's next sequence number inside the same
// transaction that stores it, so numbers are unique and increasing across
// processes and restarts, and never reused, even after records are deleted.
// The first number is taken from the clock (microseconds since 1970) when the
// outbox is created, so an agent.db that is deleted and created again on the
// same host keeps numbering above what the endpoint already stored (given a
// clock that was right both times).
//
// # When it is full
//
// The outbox holds at most Options.MaxRecords records and Options.MaxBytes
// bytes of them. An append that would pass either bound first drops the
// oldest heartbeats, one by one: a heartbeat is a full state report, so a
// later one replaces what an older one said. Events are never dropped once
// stored, because each is the only record of a change. If dropping every
// heartbeat is not enough (the outbox holds nothing but events), the new
// record is refused with ErrFull. Either way the outbox counts what it lost,
// durably, and Dropped returns the totals for the next heartbeat to carry.
// Refusing the newest rather than dropping the oldest event keeps the rule
// "a stored event is sent" without exception, and the loss is still counted
// and reported.
//
// Like every user of agent.db, the outbox opens the file for each
// transaction and closes it right after (see internal/statedb).
package outbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/statedb"
	bolt "go.etcd.io/bbolt"
)

// Defaults of Options.
const (
	DefaultMaxRecords = 50_000   // about 35 days of heartbeats at a 60 s interval
	DefaultMaxBytes   = 64 << 20 // 64 MiB of agent.db
)

// Errors of Append and Ack, checked with errors.Is.
var (
	// ErrFull: the outbox holds only events and no room is left; the
	// record was not stored and was counted as dropped.
	ErrFull = errors.New("outbox full of events")
	// ErrTooLarge: one record is larger than Options.MaxBytes; it was not
	// stored and was counted as dropped.
	ErrTooLarge = errors.New("record larger than the outbox")
	// ErrAckAhead: the endpoint acknowledged a number this outbox never
	// gave out. Nothing was deleted.
	ErrAckAhead = errors.New("acknowledgement beyond the last record written")
)

// Options bound the outbox. Zero values take the defaults.
type Options struct {
	MaxRecords int
	MaxBytes   int64
	// Now stamps records; time.Now when nil.
	Now func() time.Time
}

// Stats describes the outbox now.
type Stats struct {
	Records int
	Bytes   int64
	// NextSeq is the number the next record will get.
	NextSeq uint64
	Dropped wire.Dropped
}

// Outbox is the outbox in one agent.db. Several Outboxes, in one process or
// several, may share the file.
type Outbox struct {
	db   *statedb.DB
	opts Options
	mu   sync.Mutex // queues this instance's callers without polling the file lock
}

// Layout: bucket "outbox" holds the counters below and two buckets:
// "records" (8-byte big-endian seq → kind byte + JSON of wire.Record) and
// "heartbeats" (seq → nothing), the index of which records are heartbeats.
var (
	bucketName     = []byte("outbox")
	recordsName    = []byte("records")
	heartbeatsName = []byte("heartbeats")
	keyNext        = []byte("next")
	keyCount       = []byte("count")
	keyBytes       = []byte("bytes")
	keyDroppedHB   = []byte("dropped.heartbeats")
	keyDroppedEv   = []byte("dropped.events")
)

const (
	tagHeartbeat byte = 'h'
	tagEvent     byte = 'e'
)

// New returns the outbox in db.
func New(db *statedb.DB, opts Options) *Outbox {
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Outbox{db: db, opts: opts}
}

// Append stores a record of kind with payload (a wire.Heartbeat or
// wire.Event, or a pointer to one), stamped now, and returns its sequence
// number. The record is checked against the wire rules first, so the outbox
// never keeps a record the endpoint would refuse.
func (o *Outbox) Append(ctx context.Context, kind wire.Kind, payload any) (uint64, error) {
	rec, tag, err := newRecord(kind, payload, o.opts.Now())
	if err != nil {
		return 0, fmt.Errorf("outbox append: %w", err)
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	var seq uint64
	var refused error
	err = o.db.Update(ctx, func(tx *bolt.Tx) error {
		s, err := o.insert(tx, rec, tag)
		if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrFull) {
			refused = err
			return errRollback // drop nothing for a record that is not stored
		}
		seq = s
		return err
	})
	if refused != nil {
		if err := o.countRefused(ctx, tag); err != nil {
			return 0, fmt.Errorf("outbox append: %w (and counting it failed: %v)", refused, err)
		}
		return 0, fmt.Errorf("outbox append %s: %w", kind, refused)
	}
	if err != nil {
		return 0, fmt.Errorf("outbox append: %w", err)
	}
	return seq, nil
}

// newRecord makes the record Append stores for payload, stamped now, and
// checks it against the wire rules; tag is what its stored value starts
// with. Its sequence number is a placeholder until insert numbers it.
func newRecord(kind wire.Kind, payload any, now time.Time) (rec wire.Record, tag byte, err error) {
	rec = wire.Record{Kind: kind, Time: now.UTC()}
	switch p := payload.(type) {
	case wire.Heartbeat:
		rec.Heartbeat = &p
	case *wire.Heartbeat:
		rec.Heartbeat = p
	case wire.Event:
		rec.Event = &p
	case *wire.Event:
		rec.Event = p
	default:
		return wire.Record{}, 0, fmt.Errorf("payload of type %T, want wire.Heartbeat or wire.Event", payload)
	}
	tag = tagEvent
	if kind == wire.KindHeartbeat {
		tag = tagHeartbeat
	}
	rec.Seq = 1 // checked for real in insert, once the number is known
	if err := rec.Validate(rec.Time); err != nil {
		return wire.Record{}, 0, err
	}
	return rec, tag, nil
}

// insert numbers rec, drops the oldest heartbeats it needs room for and
// stores it, in tx. It returns ErrTooLarge or ErrFull when the record
// cannot be stored; the caller then rolls tx back.
func (o *Outbox) insert(tx *bolt.Tx, rec wire.Record, tag byte) (uint64, error) {
	root, recs, hbs, err := buckets(tx)
	if err != nil {
		return 0, err
	}
	rec.Seq = nextSeq(getU64(root, keyNext), rec.Time)
	raw, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("encode record: %w", err)
	}
	val := append([]byte{tag}, raw...)
	size := int64(len(val))
	held := usage{records: getU64(root, keyCount), bytes: int64(getU64(root, keyBytes))}
	drop, left, err := makeRoom(o.opts, held, size, heartbeatSizes(recs, hbs))
	if err != nil {
		return 0, err
	}
	if err := deleteRecords(recs, hbs, oldestKeys(hbs, drop)); err != nil {
		return 0, err
	}
	key := u64(rec.Seq)
	if err := recs.Put(key, val); err != nil {
		return 0, err
	}
	if tag == tagHeartbeat {
		if err := hbs.Put(key, nil); err != nil {
			return 0, err
		}
	}
	return rec.Seq, putAll(root,
		keyNext, rec.Seq+1,
		keyCount, left.records+1,
		keyBytes, uint64(left.bytes+size),
		keyDroppedHB, getU64(root, keyDroppedHB)+uint64(drop))
}

// nextSeq is the number the next record gets: the stored counter, or, in
// a new outbox (counter 0), the clock in microseconds since 1970 (at least
// 1), so that an outbox made again on the same host numbers above the old.
func nextSeq(stored uint64, now time.Time) uint64 {
	if stored != 0 {
		return stored
	}
	return max(1, uint64(max(now.UnixMicro(), 0)))
}

// usage is what the outbox holds: records and their bytes.
type usage struct {
	records uint64
	bytes   int64
}

// makeRoom decides how a record of size bytes fits within the bounds of
// opts beside what the outbox holds: how many of the oldest heartbeats
// (whose sizes heartbeats yields, oldest first) to drop, and what the
// outbox holds once they are gone. A record larger than the byte bound is
// refused with ErrTooLarge, and one that still does not fit once every
// heartbeat is dropped with ErrFull: events are never dropped.
func makeRoom(opts Options, held usage, size int64, heartbeats iter.Seq[int64]) (drop int, left usage, err error) {
	if size > opts.MaxBytes {
		return 0, held, fmt.Errorf("%w: %d bytes, the bound is %d", ErrTooLarge, size, opts.MaxBytes)
	}
	fits := func() bool { return held.records+1 <= uint64(opts.MaxRecords) && held.bytes+size <= opts.MaxBytes }
	for hb := range heartbeats {
		if fits() {
			break
		}
		held.records--
		held.bytes -= hb
		drop++
	}
	if !fits() {
		return 0, held, fmt.Errorf("%w: %d records, %d bytes, bounds %d and %d", ErrFull, held.records, held.bytes, opts.MaxRecords, opts.MaxBytes)
	}
	return drop, held, nil
}

// heartbeatSizes yields the stored size of each heartbeat, oldest first.
func heartbeatSizes(recs, hbs *bolt.Bucket) iter.Seq[int64] {
	return func(yield func(int64) bool) {
		c := hbs.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if !yield(int64(len(recs.Get(k)))) {
				return
			}
		}
	}
}

// oldestKeys returns the keys of the n oldest heartbeats.
func oldestKeys(hbs *bolt.Bucket, n int) [][]byte {
	var keys [][]byte
	c := hbs.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < n; k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	return keys
}

// deleteRecords deletes the records of keys and their heartbeat index
// entries.
func deleteRecords(recs, hbs *bolt.Bucket, keys [][]byte) error {
	for _, k := range keys {
		if err := recs.Delete(k); err != nil {
			return err
		}
		if err := hbs.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// countRefused counts a record Append refused, in a transaction of its
// own: the one that refused it was rolled back so as to drop nothing.
func (o *Outbox) countRefused(ctx context.Context, tag byte) error {
	key := droppedKey(tag)
	return o.db.Update(ctx, func(tx *bolt.Tx) error {
		root, _, _, err := buckets(tx)
		if err != nil {
			return err
		}
		return putAll(root, key, getU64(root, key)+1)
	})
}

// droppedKey is the counter a lost record of tag counts against.
func droppedKey(tag byte) []byte {
	if tag == tagHeartbeat {
		return keyDroppedHB
	}
	return keyDroppedEv
}

// Peek returns up to n of the oldest records, oldest first, without
// removing them. n is capped at wire.MaxRecords, the most a batch holds;
// n <= 0 means that cap.
func (o *Outbox) Peek(ctx context.Context, n int) ([]wire.Record, error) {
	if n <= 0 || n > wire.MaxRecords {
		n = wire.MaxRecords
	}
	var out []wire.Record
	err := o.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketName)
		if root == nil {
			return nil
		}
		c := root.Bucket(recordsName).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			var r wire.Record
			if len(v) < 1 || json.Unmarshal(v[1:], &r) != nil {
				return fmt.Errorf("record %d is corrupt", binary.BigEndian.Uint64(k))
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox peek: %w", err)
	}
	return out, nil
}

// Ack deletes every record numbered upTo or lower: the endpoint has stored
// them. Acknowledging again, or below what is left, is harmless.
func (o *Outbox) Ack(ctx context.Context, upTo uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.db.Update(ctx, func(tx *bolt.Tx) error {
		root, recs, hbs, err := buckets(tx)
		if err != nil {
			return err
		}
		if next := getU64(root, keyNext); upTo >= next {
			return fmt.Errorf("%w: acknowledged %d, last written %d", ErrAckAhead, upTo, next-1)
		}
		var keys [][]byte
		var freed int64
		c := recs.Cursor()
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, v = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
			freed += int64(len(v))
		}
		if err := deleteRecords(recs, hbs, keys); err != nil {
			return err
		}
		return putAll(root,
			keyCount, getU64(root, keyCount)-uint64(len(keys)),
			keyBytes, getU64(root, keyBytes)-uint64(freed))
	})
	if err != nil {
		return fmt.Errorf("outbox ack %d: %w", upTo, err)
	}
	return nil
}

// Dropped returns how many heartbeats and events the outbox has dropped or
// refused since it was created.
func (o *Outbox) Dropped(ctx context.Context) (wire.Dropped, error) {
	s, err := o.Stats(ctx)
	return s.Dropped, err
}

// Stats returns the outbox's figures.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := o.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketName)
		if root == nil {
			return nil
		}
		s = Stats{
			Records: int(getU64(root, keyCount)),
			Bytes:   int64(getU64(root, keyBytes)),
			NextSeq: getU64(root, keyNext),
			Dropped: wire.Dropped{Heartbeats: getU64(root, keyDroppedHB), Events: getU64(root, keyDroppedEv)},
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("outbox stats: %w", err)
	}
	return s, nil
}

// errRollback ends a transaction without committing it.
var errRollback = errors.New("rollback")

// view runs fn in a transaction that is rolled back, not committed: statedb
// offers only read-write transactions, and a commit would write and sync
// the file for nothing.
func (o *Outbox) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	err := o.db.Update(ctx, func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errRollback
	})
	if errors.Is(err, errRollback) {
		return nil
	}
	return err
}

func buckets(tx *bolt.Tx) (root, recs, hbs *bolt.Bucket, err error) {
	if root, err = tx.CreateBucketIfNotExists(bucketName); err != nil {
		return
	}
	if recs, err = root.CreateBucketIfNotExists(recordsName); err != nil {
		return
	}
	hbs, err = root.CreateBucketIfNotExists(heartbeatsName)
	return
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func getU64(b *bolt.Bucket, key []byte) uint64 {
	if v := b.Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// putAll stores pairs of key ([]byte) and value (uint64).
func putAll(b *bolt.Bucket, kv ...any) error {
	for i := 0; i < len(kv); i += 2 {
		if err := b.Put(kv[i].([]byte), u64(kv[i+1].(uint64))); err != nil {
			return err
		}
	}
	return nil
}

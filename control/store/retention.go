package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/clip"
)

// Retention bounds what the store keeps of each host's records: heartbeats
// and events older than their age, by the time the record carries, and
// beyond their count per host, oldest first. A host's latest state (its
// row in hosts) is never pruned. A zero field keeps for ever.
type Retention struct {
	Heartbeats        time.Duration
	Events            time.Duration
	HeartbeatsPerHost int64
	EventsPerHost     int64
}

// DefaultRetention is berth-control serve's: a month of heartbeats and a
// quarter of events, as SPEC's example; at most 50,000 heartbeats (35 days
// at the default 60 s interval, so the age decides for a normal host, and
// 14 hours for a host flooding at its quota) and 10,000 events per host.
var DefaultRetention = Retention{
	Heartbeats:        30 * 24 * time.Hour,
	Events:            90 * 24 * time.Hour,
	HeartbeatsPerHost: 50_000,
	EventsPerHost:     10_000,
}

// The keys of --retention.
const retentionKeys = "heartbeats, events (an age: 30d, 12h, 0 keeps for ever), heartbeatsPerHost, eventsPerHost (a count, 0 for no bound)"

// ParseRetention reads --retention: comma-separated KEY=VALUE, for example
// "heartbeats=30d,events=90d,heartbeatsPerHost=50000"; the keys not given
// keep their value in base.
func ParseRetention(s string, base Retention) (Retention, error) {
	r := base
	if strings.TrimSpace(s) == "" {
		return r, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" || v == "" {
			return base, fmt.Errorf("retention %q: want KEY=VALUE, with the keys %s", clip.String(part, quoteLen), retentionKeys)
		}
		if seen[k] {
			return base, fmt.Errorf("retention: %s given twice", clip.String(k, quoteLen))
		}
		seen[k] = true
		var err error
		switch k {
		case "heartbeats":
			r.Heartbeats, err = parseAge(v)
		case "events":
			r.Events, err = parseAge(v)
		case "heartbeatsPerHost":
			r.HeartbeatsPerHost, err = parseCount(v)
		case "eventsPerHost":
			r.EventsPerHost, err = parseCount(v)
		default:
			return base, fmt.Errorf("retention: unknown key %q; the keys are %s", clip.String(k, quoteLen), retentionKeys)
		}
		if err != nil {
			return base, fmt.Errorf("retention %s=%s: %w", k, clip.String(v, quoteLen), err)
		}
	}
	return r, nil
}

// maxAge bounds a retention age: beyond a century it is a typo.
const maxAge = 100 * 365 * 24 * time.Hour

// parseAge reads an age: a count of days (30d) or a Go duration (12h,
// 90m); 0 keeps for ever.
func parseAge(v string) (time.Duration, error) {
	if v == "0" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > int64(maxAge/(24*time.Hour)) {
			return 0, errors.New("want a whole number of days, as in 30d")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, errors.New("want an age such as 30d, 12h or 0 (keep for ever)")
		}
	}
	switch {
	case d < 0:
		return 0, errors.New("an age cannot be negative")
	case d > 0 && d < time.Minute:
		return 0, errors.New("an age under a minute would prune records as they arrive")
	case d > maxAge:
		return 0, fmt.Errorf("over %d days", int64(maxAge/(24*time.Hour)))
	}
	return d, nil
}

// parseCount reads a count of records per host; 0 is no bound.
func parseCount(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1e12 {
		return 0, errors.New("want a whole number of records, 0 for no bound")
	}
	return n, nil
}

// String is r in --retention's syntax.
func (r Retention) String() string {
	return fmt.Sprintf("heartbeats=%s,events=%s,heartbeatsPerHost=%d,eventsPerHost=%d",
		ageString(r.Heartbeats), ageString(r.Events), r.HeartbeatsPerHost, r.EventsPerHost)
}

func ageString(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// countSlack is how far past its bound a host's count may go before it is
// pruned back: counting a host's records costs a read of all of them, so
// it is done once per tenth of the bound, not on every record.
func countSlack(bound int64) int64 { return bound / 10 }

// overCount reports whether a host that has stored stored records of a
// kind since it was last counted may hold more than bound: the count is an
// upper bound, since pruning by age does not lower it.
func overCount(stored, bound int64) bool {
	return bound > 0 && stored > bound+countSlack(bound)
}

// expired reports whether a record of time timeMs is older than the age
// its kind is kept, at now: a record the store would prune, and so one
// whose retry it answers as a duplicate rather than a gap.
func (r Retention) expired(event bool, timeMs, nowMs int64) bool {
	age := r.Heartbeats
	if event {
		age = r.Events
	}
	return age > 0 && timeMs < nowMs-age.Milliseconds()
}

// pruneChunk is how many records one statement of Prune deletes: small
// enough that a SQLite writer is not held long, large enough that a
// PostgreSQL round trip is worth it.
const pruneChunk = 5000

// pruneLock is the PostgreSQL advisory lock that keeps serve replicas
// from pruning the same rows at once ("prune" in ASCII).
const pruneLock = 0x7072756e65

// Pruned counts what one Prune removed.
type Pruned struct {
	Heartbeats, Events int64
}

// Prune deletes the heartbeats and events older than the retention's ages
// at now, in chunks, each its own transaction, so that ingest goes on
// beside it. The store's background pruner calls it; it is exported for
// tests and tools. On PostgreSQL one replica prunes at a time; the others
// skip their turn.
func (s *Store) Prune(ctx context.Context, now time.Time) (Pruned, error) {
	var p Pruned
	if s.retention.Heartbeats == 0 && s.retention.Events == 0 {
		return p, nil
	}
	// On SQLite each chunk takes the one writer connection and gives it
	// back, so that group commits go on between chunks. On PostgreSQL the
	// chunks run on one connection, which holds the advisory lock.
	var db execer = s.w
	if s.d == dialectPostgres {
		conn, err := s.w.Conn(ctx)
		if err != nil {
			return p, fmt.Errorf("prune: %w", err)
		}
		defer conn.Close()
		var got bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", int64(pruneLock)).Scan(&got); err != nil {
			return p, fmt.Errorf("prune: lock: %w", err)
		}
		if !got {
			return p, nil
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(pruneLock))
		db = conn
	}
	for _, t := range []struct {
		table string
		age   time.Duration
		n     *int64
	}{{"history", s.retention.Heartbeats, &p.Heartbeats}, {"events", s.retention.Events, &p.Events}} {
		if t.age == 0 {
			continue
		}
		n, err := s.pruneOlder(ctx, db, t.table, now.Add(-t.age).UnixMilli())
		*t.n = n
		if err != nil {
			return p, fmt.Errorf("prune %s older than %s: %w", t.table, ageString(t.age), err)
		}
	}
	return p, nil
}

// pruneOlder deletes the rows of table with a time before cutoff, a chunk
// at a time, and returns how many it deleted.
func (s *Store) pruneOlder(ctx context.Context, db execer, table string, cutoff int64) (int64, error) {
	// The row's own address picks the chunk: rowid on SQLite, ctid on
	// PostgreSQL, both without a second look-up by key.
	q := "DELETE FROM " + table + " WHERE rowid IN (SELECT rowid FROM " + table + " WHERE time_ms < $1 LIMIT $2)"
	if s.d == dialectPostgres {
		q = "DELETE FROM " + table + " WHERE ctid = ANY(ARRAY(SELECT ctid FROM " + table + " WHERE time_ms < $1 LIMIT $2))"
	}
	var total int64
	for {
		res, err := db.ExecContext(ctx, q, cutoff, int64(pruneChunk))
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}

// execer is what runs a statement: the pool or one connection of it.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// pruner runs Prune every interval until the store closes.
func (s *Store) pruner(every time.Duration) {
	defer s.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.bgCtx, every)
		p, err := s.Prune(ctx, time.Now())
		cancel()
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			s.log.Warn("pruning old records failed; the next round tries again", "err", err, "heartbeats", p.Heartbeats, "events", p.Events)
		case p.Heartbeats+p.Events > 0:
			s.log.Debug("pruned old records", "heartbeats", p.Heartbeats, "events", p.Events)
		}
	}
}

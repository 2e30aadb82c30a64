package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/clip"
)

// EvalRollout runs one step of rollout id as one transaction: it reads
// the rollout, its members with their hosts' facts and (while it is
// active) the hosts that joined its selector, calls decide, and writes
// the change decide returns (nil: nothing to write) with a check that
// the rollout's revision did not move meanwhile (else ErrStale, nothing
// written). On PostgreSQL the step holds the rollout's advisory lock:
// with wait false a step another replica runs is ErrBusy at once; with
// wait (an operator's action) it waits its turn. decide's error is
// returned as is. It returns the rollout's row after the step.
func (s *Store) EvalRollout(ctx context.Context, id string, now time.Time, wait bool, decide func(*RolloutSnapshot) (*RolloutChange, error)) (RolloutRow, error) {
	// SQLite's one writer connection must not sit in a transaction while
	// the members are read: ingest would wait for all of it. There the
	// snapshot is read on a reader and written after deciding, the
	// revision check making the two one step.
	db := s.w
	if s.d == dialectSQLite {
		db = s.r
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return RolloutRow{}, fmt.Errorf("rollout %s: begin: %w", id, err)
	}
	defer tx.Rollback()
	if s.d == dialectPostgres {
		if err := lockRollout(ctx, tx, id, wait); err != nil {
			return RolloutRow{}, err
		}
		// A step sorts a rollout's members (100,000 rows, 20 MB): in
		// memory, not in files as the default work_mem would.
		if _, err := tx.ExecContext(ctx, "SET LOCAL work_mem = '64MB'"); err != nil {
			return RolloutRow{}, fmt.Errorf("rollout %s: %w", id, err)
		}
	}
	snap, err := s.loadSnapshot(ctx, tx, id)
	if err != nil {
		return RolloutRow{}, err
	}
	c, err := decide(snap)
	if err != nil || c == nil {
		return snap.Rollout, err
	}
	if s.d == dialectSQLite {
		tx.Rollback()
		if tx, err = s.w.BeginTx(ctx, nil); err != nil {
			return RolloutRow{}, fmt.Errorf("rollout %s: begin: %w", id, err)
		}
		defer tx.Rollback()
	}
	row, err := s.saveChange(ctx, tx, snap, now, *c)
	if err != nil {
		return RolloutRow{}, err
	}
	if err := tx.Commit(); err != nil {
		s.members.drop(id)
		return RolloutRow{}, fmt.Errorf("rollout %s: commit: %w", id, err)
	}
	s.members.apply(id, snap.Rollout.Rev, c.Members, IsActive(row.State))
	return row, nil
}

// lockRollout takes rollout id's advisory lock for tx (PostgreSQL).
func lockRollout(ctx context.Context, tx *sql.Tx, id string, wait bool) error {
	if wait {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", rolloutLockKey(id)); err != nil {
			return fmt.Errorf("rollout %s: lock: %w", id, err)
		}
		return nil
	}
	var got bool
	if err := tx.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock($1)", rolloutLockKey(id)).Scan(&got); err != nil {
		return fmt.Errorf("rollout %s: lock: %w", id, err)
	}
	if !got {
		return fmt.Errorf("rollout %s: %w", id, ErrBusy)
	}
	return nil
}

// saveChange writes c in tx after checking snap's revision.
func (s *Store) saveChange(ctx context.Context, tx *sql.Tx, snap *RolloutSnapshot, now time.Time, c RolloutChange) (RolloutRow, error) {
	r := snap.Rollout
	waves, err := json.Marshal(c.Waves)
	if err != nil {
		return RolloutRow{}, fmt.Errorf("rollout %s: %w", r.ID, err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE rollouts SET state = $1, wave = $2, waves = $3, updated_ms = $4, rev = rev + 1
		WHERE id = $5 AND rev = $6`, c.State, int64(c.Wave), string(waves), now.UnixMilli(), r.ID, r.Rev)
	if err != nil {
		return RolloutRow{}, fmt.Errorf("rollout %s: update: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return RolloutRow{}, errors.Join(fmt.Errorf("rollout %s: revision %d: %w", r.ID, r.Rev, ErrStale), err)
	}
	if err := s.writeChange(ctx, tx, r.ID, snap.LastSeq, now, c); err != nil {
		return RolloutRow{}, fmt.Errorf("rollout %s: %w", r.ID, err)
	}
	r.State, r.Wave, r.Waves, r.Updated, r.Rev = c.State, c.Wave, c.Waves, now, r.Rev+1
	return r, nil
}

const rolloutCols = "id, spec, state, wave, waves, created_by, created_ms, updated_ms, rev"

func scanRollout(sc scanner) (RolloutRow, error) {
	var r RolloutRow
	var spec, waves string
	var wave, created, updated int64
	if err := sc.Scan(&r.ID, &spec, &r.State, &wave, &waves, &r.CreatedBy, &created, &updated, &r.Rev); err != nil {
		return RolloutRow{}, err
	}
	if err := json.Unmarshal([]byte(spec), &r.Spec); err != nil {
		return RolloutRow{}, fmt.Errorf("rollout %s spec: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(waves), &r.Waves); err != nil {
		return RolloutRow{}, fmt.Errorf("rollout %s waves: %w", r.ID, err)
	}
	r.Wave, r.Created, r.Updated = int(wave), msTime(created), msTime(updated)
	return r, nil
}

// loadSnapshot reads what EvalRollout's decide needs, in q. The members
// and the hosts the selector matches are read apart, each in its
// table's order, and joined here: at a hundred thousand members that is
// several times faster on SQLite than a join that looks each host up.
func (s *Store) loadSnapshot(ctx context.Context, q querier, id string) (*RolloutSnapshot, error) {
	r, err := scanRollout(q.QueryRowContext(ctx, "SELECT "+rolloutCols+" FROM rollouts WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("rollout %q: %w", clip.String(id, quoteLen), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("rollout %s: %w", id, err)
	}
	snap := &RolloutSnapshot{Rollout: r}
	var cached bool
	if snap.Members, cached = s.members.get(id, r.Rev); !cached {
		if snap.Members, err = loadMembers(ctx, q, id); err != nil {
			return nil, fmt.Errorf("rollout %s: members: %w", id, err)
		}
		if IsActive(r.State) {
			s.members.put(id, r.Rev, snap.Members)
		}
	}
	a := &sqlArgs{}
	matched, err := readStepFacts(ctx, q, len(snap.Members), selectorQuery(r.Spec.Selector, false, a), a.vals...)
	if err != nil {
		return nil, fmt.Errorf("rollout %s: hosts: %w", id, err)
	}
	pins, err := readPins(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("rollout %s: %w", id, err)
	}
	for i := range matched {
		if p, ok := pins[matched[i].Host]; ok {
			matched[i].Pin = p
		}
	}
	if err := s.joinFacts(ctx, q, snap, matched); err != nil {
		return nil, fmt.Errorf("rollout %s: hosts: %w", id, err)
	}
	var seq sql.NullInt64
	if err := q.QueryRowContext(ctx, "SELECT MAX(seq) FROM rollout_decisions WHERE rollout_id = $1", id).Scan(&seq); err != nil {
		return nil, fmt.Errorf("rollout %s: decisions: %w", id, err)
	}
	snap.LastSeq = int(seq.Int64)
	samples, err := readSamples(ctx, q, id, 1)
	if err != nil {
		return nil, fmt.Errorf("rollout %s: %w", id, err)
	}
	if len(samples) > 0 {
		snap.LastSample = &samples[0]
	}
	return snap, nil
}

// joinFacts gives snap's members their hosts' facts from matched (the
// hosts the selector matches), reading those of members that no longer
// match; the matched hosts that are not members are the joiners, while
// the rollout is active.
func (s *Store) joinFacts(ctx context.Context, q querier, snap *RolloutSnapshot, matched []Facts) error {
	idx := make(map[string]int, len(matched))
	for i, f := range matched {
		idx[f.Host] = i
	}
	member := make([]bool, len(matched))
	var missing []any
	for i := range snap.Members {
		m := &snap.Members[i]
		if j, ok := idx[m.Host]; ok {
			m.Facts, member[j] = matched[j], true
			continue
		}
		m.Facts = Facts{Host: m.Host}
		missing = append(missing, m.Host)
	}
	if len(missing) > 0 {
		others := map[string]Facts{}
		err := s.inListQuery(ctx, q, "SELECT "+factCols+" FROM hosts h LEFT JOIN pins p ON p.host_id = h.id WHERE h.id", missing, "", func(rows *sql.Rows) error {
			return scanFactsRow(rows, others)
		})
		if err != nil {
			return err
		}
		for i := range snap.Members {
			if f, ok := others[snap.Members[i].Host]; ok {
				snap.Members[i].Facts = f
			}
		}
	}
	if !IsActive(snap.Rollout.State) {
		return nil
	}
	var joiners []any
	for j, f := range matched {
		if !member[j] {
			joiners = append(joiners, f.Host)
		}
	}
	if len(joiners) == 0 {
		return nil
	}
	// Joiners are few: read them whole (platform and pins too), so that the
	// caller can check the version is signed for them.
	full := map[string]Facts{}
	err := s.inListQuery(ctx, q, "SELECT "+factCols+" FROM hosts h LEFT JOIN pins p ON p.host_id = h.id WHERE h.id", joiners, "ORDER BY h.id", func(rows *sql.Rows) error {
		return scanFactsRow(rows, full)
	})
	if err != nil {
		return err
	}
	for _, h := range joiners {
		if f, ok := full[h.(string)]; ok {
			snap.Joiners = append(snap.Joiners, f)
		}
	}
	return nil
}

// loadMembers reads rollout id's members, in hash order.
func loadMembers(ctx context.Context, q querier, id string) ([]MemberFacts, error) {
	var n int64
	if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM rollout_hosts WHERE rollout_id = $1", id).Scan(&n); err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT host_id, hash, wave, state, prev_flavor, prev_version, told_ms, healthy_ms
		FROM rollout_hosts WHERE rollout_id = $1 ORDER BY hash`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]MemberFacts, 0, n)
	for rows.Next() {
		var m MemberFacts
		var wave, told, healthy int64
		if err := rows.Scan(&m.Host, &m.Hash, &wave, &m.State, &m.PrevFlavor, &m.PrevVersion, &told, &healthy); err != nil {
			return nil, err
		}
		m.Wave, m.Told, m.HealthySince = int(wave), msTimeOpt(told), msTimeOpt(healthy)
		out = append(out, m)
	}
	return out, rows.Err()
}

// readSamples reads rollout id's version samples, newest first, at most
// limit of them (0: all).
func readSamples(ctx context.Context, q querier, id string, limit int) ([]wire.VersionSample, error) {
	query := "SELECT time_ms, counts FROM rollout_samples WHERE rollout_id = $1 ORDER BY time_ms DESC"
	args := []any{id}
	if limit > 0 {
		query += " LIMIT $2"
		args = append(args, int64(limit))
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("version samples: %w", err)
	}
	defer rows.Close()
	var out []wire.VersionSample
	for rows.Next() {
		var ms int64
		var counts string
		if err := rows.Scan(&ms, &counts); err != nil {
			return nil, fmt.Errorf("version samples: %w", err)
		}
		v := wire.VersionSample{Time: msTime(ms)}
		if err := json.Unmarshal([]byte(counts), &v.Counts); err != nil {
			return nil, fmt.Errorf("version sample of %s at %d: %w", id, ms, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

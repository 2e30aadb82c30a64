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
	}
	snap, err := loadSnapshot(ctx, tx, id)
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
		return RolloutRow{}, fmt.Errorf("rollout %s: commit: %w", id, err)
	}
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

// loadSnapshot reads what EvalRollout's decide needs, in q.
func loadSnapshot(ctx context.Context, q querier, id string) (*RolloutSnapshot, error) {
	r, err := scanRollout(q.QueryRowContext(ctx, "SELECT "+rolloutCols+" FROM rollouts WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("rollout %q: %w", clip.String(id, quoteLen), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("rollout %s: %w", id, err)
	}
	snap := &RolloutSnapshot{Rollout: r}
	if snap.Members, err = loadMembers(ctx, q, id); err != nil {
		return nil, fmt.Errorf("rollout %s: members: %w", id, err)
	}
	if IsActive(r.State) {
		a := &sqlArgs{}
		member := a.add(id)
		extra := " AND NOT EXISTS (SELECT 1 FROM rollout_hosts rh WHERE rh.rollout_id = " + member + " AND rh.host_id = h.id)"
		if snap.Joiners, err = readFacts(ctx, q, selectorQuery(r.Spec.Selector, extra, a), a.vals...); err != nil {
			return nil, fmt.Errorf("rollout %s: joiners: %w", id, err)
		}
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

// loadMembers reads rollout id's members with their hosts' facts, by
// hash (wave order).
func loadMembers(ctx context.Context, q querier, id string) ([]MemberFacts, error) {
	rows, err := q.QueryContext(ctx, `SELECT rh.host_id, rh.hash, rh.wave, rh.state, rh.prev_flavor, rh.prev_version,
		rh.told_ms, rh.healthy_ms, h.id IS NOT NULL, COALESCE(h.state, ''), COALESCE(h.engine_flavor, ''),
		COALESCE(h.engine_version, ''), COALESCE(h.agent_version, ''), COALESCE(h.os, ''), COALESCE(h.arch, ''),
		COALESCE(h.last_report_ms, 0), COALESCE(h.interval_ms, 0), COALESCE(h.rejected, '[]'),
		COALESCE(p.engine, ''), COALESCE(p.agent, '')
		FROM rollout_hosts rh LEFT JOIN hosts h ON h.id = rh.host_id LEFT JOIN pins p ON p.host_id = rh.host_id
		WHERE rh.rollout_id = $1 ORDER BY rh.hash`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MemberFacts
	for rows.Next() {
		var m MemberFacts
		var wave, told, healthy, report, interval int64
		var rejected string
		f := &m.Facts
		if err := rows.Scan(&m.Host, &m.Hash, &wave, &m.State, &m.PrevFlavor, &m.PrevVersion, &told, &healthy,
			&f.Exists, &f.State, &f.Flavor, &f.EngineVersion, &f.AgentVersion, &f.OS, &f.Arch, &report, &interval,
			&rejected, &f.Pin.Engine, &f.Pin.Agent); err != nil {
			return nil, err
		}
		m.Wave, m.Told, m.HealthySince = int(wave), msTimeOpt(told), msTimeOpt(healthy)
		f.Host, f.LastReport, f.Interval = m.Host, msTime(report), time.Duration(interval)*time.Millisecond
		if err := unmarshalOpt(rejected, &f.Rejected); err != nil {
			return nil, fmt.Errorf("host %s rejected versions: %w", m.Host, err)
		}
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

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/clip"
)

// RolloutDetail is a rollout with what GET /v1/rollouts/{id} shows of it.
type RolloutDetail struct {
	Row RolloutRow
	// Counts counts the members by wave, then by state.
	Counts map[int]map[string]int
	// Decisions are oldest first.
	Decisions []wire.Decision
	// Samples are oldest first.
	Samples []wire.VersionSample
}

// Rollout returns rollout id, or ErrNotFound.
func (s *Store) Rollout(ctx context.Context, id string) (RolloutDetail, error) {
	r, err := scanRollout(s.r.QueryRowContext(ctx, "SELECT "+rolloutCols+" FROM rollouts WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return RolloutDetail{}, fmt.Errorf("rollout %q: %w", clip.String(id, quoteLen), ErrNotFound)
	}
	if err != nil {
		return RolloutDetail{}, fmt.Errorf("rollout %s: %w", id, err)
	}
	d := RolloutDetail{Row: r}
	if err := s.fillDetail(ctx, &d); err != nil {
		return RolloutDetail{}, fmt.Errorf("rollout %s: %w", id, err)
	}
	return d, nil
}

// Rollouts returns every rollout, newest first.
func (s *Store) Rollouts(ctx context.Context) ([]RolloutDetail, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+rolloutCols+" FROM rollouts ORDER BY created_ms DESC, id DESC")
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	var out []RolloutDetail
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list rollouts: %w", err)
		}
		out = append(out, RolloutDetail{Row: r})
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	for i := range out {
		if err := s.fillDetail(ctx, &out[i]); err != nil {
			return nil, fmt.Errorf("list rollouts: %s: %w", out[i].Row.ID, err)
		}
	}
	return out, nil
}

// ActiveRollouts returns the ids of the running and paused rollouts,
// oldest first.
func (s *Store) ActiveRollouts(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT id FROM rollouts WHERE state IN ($1, $2) ORDER BY created_ms, id",
		activeStates[0], activeStates[1])
	if err != nil {
		return nil, fmt.Errorf("list active rollouts: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list active rollouts: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// fillDetail reads d's counts, decisions and samples.
func (s *Store) fillDetail(ctx context.Context, d *RolloutDetail) error {
	id := d.Row.ID
	rows, err := s.r.QueryContext(ctx, "SELECT wave, state, COUNT(*) FROM rollout_hosts WHERE rollout_id = $1 GROUP BY wave, state", id)
	if err != nil {
		return fmt.Errorf("count hosts: %w", err)
	}
	d.Counts = map[int]map[string]int{}
	for rows.Next() {
		var wave int64
		var state string
		var n int
		if err := rows.Scan(&wave, &state, &n); err != nil {
			rows.Close()
			return fmt.Errorf("count hosts: %w", err)
		}
		if d.Counts[int(wave)] == nil {
			d.Counts[int(wave)] = map[string]int{}
		}
		d.Counts[int(wave)][state] += n
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("count hosts: %w", err)
	}
	if d.Decisions, err = s.decisions(ctx, id); err != nil {
		return err
	}
	if d.Samples, err = readSamples(ctx, s.r, id, 0); err != nil {
		return err
	}
	slices.Reverse(d.Samples)
	return nil
}

func (s *Store) decisions(ctx context.Context, id string) ([]wire.Decision, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, time_ms, who, action, wave, from_state, to_state, reason
		FROM rollout_decisions WHERE rollout_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("decisions: %w", err)
	}
	defer rows.Close()
	out := []wire.Decision{}
	for rows.Next() {
		var d wire.Decision
		var seq, ms, wave int64
		if err := rows.Scan(&seq, &ms, &d.Who, &d.Action, &wave, &d.From, &d.To, &d.Reason); err != nil {
			return nil, fmt.Errorf("decisions: %w", err)
		}
		d.Seq, d.Time, d.Wave = int(seq), msTime(ms), int(wave)
		out = append(out, d)
	}
	return out, rows.Err()
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/clip"
)

// Pins, the inputs of a host's desired state, and the feed of hosts whose
// desired state changed.

// SetPin sets the members of p that are not empty as host's pins, keeping
// the other, and returns the host's pins after. A host the store does not
// know is ErrNotFound. Waiting long polls hear of it (DesiredChanges).
func (s *Store) SetPin(ctx context.Context, host, who string, p wire.Pin, now time.Time) (wire.Pin, error) {
	return s.changePin(ctx, host, now, `INSERT INTO pins (host_id, engine, agent, who, updated_ms) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (host_id) DO UPDATE SET
		engine = CASE WHEN excluded.engine <> '' THEN excluded.engine ELSE pins.engine END,
		agent = CASE WHEN excluded.agent <> '' THEN excluded.agent ELSE pins.agent END,
		who = excluded.who, updated_ms = excluded.updated_ms
		RETURNING engine, agent`, host, p.Engine, p.Agent, who, now.UnixMilli())
}

// ClearPin removes host's pin of kind (engine, agent, or "" for both) and
// returns the host's pins after. A host the store does not know is
// ErrNotFound; a host without that pin is not an error.
func (s *Store) ClearPin(ctx context.Context, host, who, kind string, now time.Time) (wire.Pin, error) {
	engine, agent := kind == "" || kind == wire.KindEngine, kind == "" || kind == wire.KindAgent
	if !engine && !agent {
		return wire.Pin{}, fmt.Errorf("%w: pin kind %q: want engine, agent or none for both", wire.ErrInvalid, clip.String(kind, quoteLen))
	}
	return s.changePin(ctx, host, now, `UPDATE pins SET
		engine = CASE WHEN $2 = 1 THEN '' ELSE engine END,
		agent = CASE WHEN $3 = 1 THEN '' ELSE agent END,
		who = $4, updated_ms = $5 WHERE host_id = $1
		RETURNING engine, agent`, host, boolInt(engine), boolInt(agent), who, now.UnixMilli())
}

// changePin runs the pin statement q (which returns the pins after) for
// host, in a transaction that checks the host exists, drops an emptied
// row and notifies the host's long polls.
func (s *Store) changePin(ctx context.Context, host string, now time.Time, q string, args ...any) (wire.Pin, error) {
	what := fmt.Sprintf("pin host %q", clip.String(host, quoteLen))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wire.Pin{}, fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback()
	var one int64
	err = tx.QueryRowContext(ctx, "SELECT 1 FROM hosts WHERE id = $1", host).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return wire.Pin{}, fmt.Errorf("host %q: %w", clip.String(host, quoteLen), ErrNotFound)
	}
	if err != nil {
		return wire.Pin{}, fmt.Errorf("%s: %w", what, err)
	}
	var p wire.Pin
	err = tx.QueryRowContext(ctx, q, args...).Scan(&p.Engine, &p.Agent)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return wire.Pin{}, fmt.Errorf("%s: %w", what, err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM pins WHERE host_id = $1 AND engine = '' AND agent = ''", host); err != nil {
		return wire.Pin{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := s.notify(ctx, tx, []string{host}, now); err != nil {
		return wire.Pin{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return wire.Pin{}, fmt.Errorf("%s: commit: %w", what, err)
	}
	return p, nil
}

// DesiredInput is what a host's desired state is computed from.
type DesiredInput struct {
	// Flavor is the engine flavor the host reports.
	Flavor string
	Pin    wire.Pin
	// Memberships are the host's rollouts in which it is not pending.
	Memberships []Membership
}

// Membership is a host in one rollout, as its desired state needs it.
type Membership struct {
	Rollout                 string
	Kind, Flavor, Version   string
	Created                 time.Time
	State                   string
	PrevFlavor, PrevVersion string
}

// DesiredInputs returns, for each of hosts that the store knows, what
// its desired state is computed from.
func (s *Store) DesiredInputs(ctx context.Context, hosts []string) (map[string]*DesiredInput, error) {
	out := map[string]*DesiredInput{}
	ids := anys(hosts)
	err := s.inListQuery(ctx, s.r, "SELECT h.id, h.engine_flavor, COALESCE(p.engine, ''), COALESCE(p.agent, '') FROM hosts h LEFT JOIN pins p ON p.host_id = h.id WHERE h.id", ids, "", func(rows *sql.Rows) error {
		var id string
		in := &DesiredInput{}
		if err := rows.Scan(&id, &in.Flavor, &in.Pin.Engine, &in.Pin.Agent); err != nil {
			return err
		}
		out[id] = in
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("desired state: hosts: %w", err)
	}
	err = s.inListQuery(ctx, s.r, `SELECT rh.host_id, r.id, r.kind, r.flavor, r.version, r.created_ms, rh.state,
		rh.prev_flavor, rh.prev_version FROM rollout_hosts rh JOIN rollouts r ON r.id = rh.rollout_id
		WHERE rh.state <> 'pending' AND rh.host_id`, ids, "", func(rows *sql.Rows) error {
		var host string
		var m Membership
		var created int64
		if err := rows.Scan(&host, &m.Rollout, &m.Kind, &m.Flavor, &m.Version, &created, &m.State, &m.PrevFlavor, &m.PrevVersion); err != nil {
			return err
		}
		m.Created = msTime(created)
		if in := out[host]; in != nil {
			in.Memberships = append(in.Memberships, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("desired state: rollouts: %w", err)
	}
	return out, nil
}

// DesiredGen returns the newest generation of desired-state changes.
func (s *Store) DesiredGen(ctx context.Context) (int64, error) {
	var gen int64
	if err := s.r.QueryRowContext(ctx, "SELECT gen FROM desired_gen WHERE id = 1").Scan(&gen); err != nil {
		return 0, fmt.Errorf("desired generation: %w", err)
	}
	return gen, nil
}

// DesiredChanges returns the hosts whose desired state changed after
// generation after, and the generation they bring the reader to. When
// complete is false, changes after after were pruned before they were
// read: the caller must assume every host changed.
func (s *Store) DesiredChanges(ctx context.Context, after int64) (hosts []string, gen int64, complete bool, err error) {
	if gen, err = s.DesiredGen(ctx); err != nil || gen <= after {
		return nil, max(gen, after), true, err
	}
	rows, err := s.r.QueryContext(ctx, "SELECT gen, host_id FROM desired_changes WHERE gen > $1 AND gen <= $2", after, gen)
	if err != nil {
		return nil, after, false, fmt.Errorf("desired changes: %w", err)
	}
	defer rows.Close()
	least := int64(0)
	for rows.Next() {
		var g int64
		var h string
		if err := rows.Scan(&g, &h); err != nil {
			return nil, after, false, fmt.Errorf("desired changes: %w", err)
		}
		if least == 0 || g < least {
			least = g
		}
		hosts = append(hosts, h)
	}
	if err := rows.Err(); err != nil {
		return nil, after, false, fmt.Errorf("desired changes: %w", err)
	}
	return hosts, gen, least == after+1, nil
}

// PruneDesiredChanges deletes the change records older than before and
// returns how many it deleted.
func (s *Store) PruneDesiredChanges(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, "DELETE FROM desired_changes WHERE time_ms < $1", before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune desired changes: %w", err)
	}
	return res.RowsAffected()
}

package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/clip"
)

// Rollouts as stored. The store keeps them and their members, decisions
// and version samples, and runs each change in one transaction; what a
// change is (which hosts are told, when a wave advances) is decided by
// control/rollout, through the callbacks of CreateRollout and
// EvalRollout.

// Errors of the rollout methods, checked with errors.Is.
var (
	// ErrBusy: another replica holds the rollout's lock (EvalRollout with
	// wait false); it is deciding the step, so this one need not.
	ErrBusy = errors.New("rollout busy on another replica")
	// ErrStale: the rollout changed since it was read (its revision
	// moved); nothing was written. Read it again and decide again.
	ErrStale = errors.New("rollout changed meanwhile")
)

// RolloutRow is a rollout's own row.
type RolloutRow struct {
	ID        string
	Spec      wire.RolloutSpec
	State     string
	Wave      int
	Waves     []WaveTimes
	CreatedBy string
	Created   time.Time
	Updated   time.Time
	// Rev is the revision every change moves on: the optimistic check that
	// makes two replicas' decisions on one step exclusive.
	Rev int64
}

// WaveTimes is when a wave started and was done (zero: not yet).
type WaveTimes struct {
	Started time.Time `json:"started,omitzero"`
	Done    time.Time `json:"done,omitzero"`
}

// Member is a host of a rollout as the rollout keeps it.
type Member struct {
	Host string
	// Hash is the hex SHA-256 that orders the rollout's hosts into waves.
	Hash  string
	Wave  int
	State string
	// PrevFlavor and PrevVersion are what the host reported of the
	// rollout's kind just before it was told: what a rollback goes to.
	PrevFlavor, PrevVersion string
	Told                    time.Time
	// HealthySince is when the host was first seen on the target and
	// Healthy, since it last was not.
	HealthySince time.Time
}

// Facts is what the last heartbeat said of a host, as the rollout
// controller reads it.
type Facts struct {
	Host string
	// Exists is false for a member whose host was forgotten.
	Exists                              bool
	State                               string // reported
	Flavor, EngineVersion, AgentVersion string
	OS, Arch                            string
	LastReport                          time.Time
	Interval                            time.Duration
	Rejected                            []wire.Rejected
	Pin                                 wire.Pin
}

// MemberFacts is a member with its host's facts.
type MemberFacts struct {
	Member
	Facts Facts
}

// RolloutSnapshot is what EvalRollout reads for its decide callback.
type RolloutSnapshot struct {
	Rollout RolloutRow
	Members []MemberFacts
	// Joiners are the hosts the selector matches now that are not
	// members, read only while the rollout is running or paused.
	Joiners []Facts
	// LastSeq is the number of the rollout's newest decision.
	LastSeq int
	// LastSample is the newest version sample, nil before the first.
	LastSample *wire.VersionSample
}

// RolloutChange is what a decide callback wants written, in one
// transaction with the rollout's revision check.
type RolloutChange struct {
	State string
	Wave  int
	Waves []WaveTimes
	// Members are the members added or changed (each host once).
	Members []Member
	// Decisions are numbered by the store after LastSeq, in order.
	Decisions []wire.Decision
	Sample    *wire.VersionSample
	// Notify are the hosts whose desired state may have changed.
	Notify []string
}

// The rollout states in which a rollout holds its hosts: it tells,
// advances, takes joiners and refuses an overlapping rollout.
var activeStates = []string{wire.RolloutRunning, wire.RolloutPaused}

// IsActive reports whether a rollout in state still moves hosts.
func IsActive(state string) bool { return slices.Contains(activeStates, state) }

// rolloutLockKey is the PostgreSQL advisory lock of one rollout.
func rolloutLockKey(id string) int64 {
	h := fnv.New64a()
	h.Write([]byte("berth.rollout\x00" + id))
	return int64(h.Sum64())
}

// createLock is the PostgreSQL advisory lock that orders the creation of
// rollouts, so that two replicas cannot both find no overlap and both
// create ("rollout" in ASCII).
const createLock = 0x726f6c6c6f7574

const factCols = `h.id, h.state, h.engine_flavor, h.engine_version, h.agent_version, h.os, h.arch,
	h.last_report_ms, h.interval_ms, h.rejected, COALESCE(p.engine, ''), COALESCE(p.agent, '')`

func scanFacts(dest []any, f *Facts) []any {
	return append(dest, &f.Host, &f.State, &f.Flavor, &f.EngineVersion, &f.AgentVersion, &f.OS, &f.Arch,
		new(int64), new(int64), new(string), &f.Pin.Engine, &f.Pin.Agent)
}

// finishFacts converts the columns scanFacts left raw (the last report,
// interval and rejected versions, at the end of dest).
func finishFacts(dest []any, f *Facts) error {
	n := len(dest)
	f.Exists = true
	f.LastReport = msTime(*dest[n-5].(*int64))
	f.Interval = time.Duration(*dest[n-4].(*int64)) * time.Millisecond
	if err := unmarshalOpt(*dest[n-3].(*string), &f.Rejected); err != nil {
		return fmt.Errorf("host %s rejected versions: %w", f.Host, err)
	}
	return nil
}

// selectorQuery is the SQL of the hosts whose labels match every pair of
// sel, read from factCols, driven from the label index of the first pair;
// extra adds conditions on h.
func selectorQuery(sel map[string]string, extra string, a *sqlArgs) string {
	keys := slices.Sorted(maps.Keys(sel))
	var b strings.Builder
	b.WriteString("SELECT " + factCols + " FROM host_labels l JOIN hosts h ON h.id = l.host_id LEFT JOIN pins p ON p.host_id = h.id WHERE l.key = ")
	b.WriteString(a.add(keys[0]) + " AND l.value = " + a.add(sel[keys[0]]))
	for _, k := range keys[1:] {
		b.WriteString(" AND EXISTS (SELECT 1 FROM host_labels m WHERE m.host_id = h.id AND m.key = " + a.add(k) + " AND m.value = " + a.add(sel[k]) + ")")
	}
	b.WriteString(extra)
	b.WriteString(" ORDER BY h.id")
	return b.String()
}

// readFacts runs a query of factCols and returns its hosts.
func readFacts(ctx context.Context, q querier, query string, args ...any) ([]Facts, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Facts
	for rows.Next() {
		var f Facts
		dest := scanFacts(nil, &f)
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		if err := finishFacts(dest, &f); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// MatchHosts returns the hosts whose labels match every pair of sel, by
// id. An empty selector matches nothing.
func (s *Store) MatchHosts(ctx context.Context, sel map[string]string) ([]Facts, error) {
	if len(sel) == 0 {
		return nil, nil
	}
	a := &sqlArgs{}
	f, err := readFacts(ctx, s.r, selectorQuery(sel, "", a), a.vals...)
	if err != nil {
		return nil, fmt.Errorf("match hosts: %w", err)
	}
	return f, nil
}

// HostFacts returns the facts of the hosts ids that exist, by id.
func (s *Store) HostFacts(ctx context.Context, ids []string) (map[string]Facts, error) {
	out := map[string]Facts{}
	err := s.inListQuery(ctx, s.r, "SELECT "+factCols+" FROM hosts h LEFT JOIN pins p ON p.host_id = h.id WHERE h.id", anys(ids), "", func(rows *sql.Rows) error {
		var f Facts
		dest := scanFacts(nil, &f)
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		if err := finishFacts(dest, &f); err != nil {
			return err
		}
		out[f.Host] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read hosts: %w", err)
	}
	return out, nil
}

func anys(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// CreateView is what CreateRollout reads, under its lock, for its build
// callback.
type CreateView struct {
	// Hosts are the hosts the new rollout's selector matches.
	Hosts []Facts
	// Overlap counts, per active rollout of the same kind, the hosts it
	// holds that the selector matches too.
	Overlap map[string]int
}

// CreateRollout creates a rollout in one transaction, under a lock that
// orders creations across replicas: it reads the hosts r's selector
// matches and the active rollouts of r's kind that hold any of them,
// and build turns those into the rollout's first change (its members,
// the create decision, …) or refuses (its error is returned as is).
func (s *Store) CreateRollout(ctx context.Context, r RolloutRow, build func(CreateView) (RolloutChange, error)) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create rollout: %w", err)
	}
	defer tx.Rollback()
	if s.d == dialectPostgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(createLock)); err != nil {
			return fmt.Errorf("create rollout: lock: %w", err)
		}
	}
	var v CreateView
	if len(r.Spec.Selector) > 0 {
		a := &sqlArgs{}
		if v.Hosts, err = readFacts(ctx, tx, selectorQuery(r.Spec.Selector, "", a), a.vals...); err != nil {
			return fmt.Errorf("create rollout: match hosts: %w", err)
		}
	}
	if v.Overlap, err = overlaps(ctx, tx, r.Spec.Kind, v.Hosts); err != nil {
		return fmt.Errorf("create rollout: %w", err)
	}
	c, err := build(v)
	if err != nil {
		return err
	}
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return fmt.Errorf("create rollout: %w", err)
	}
	waves, err := json.Marshal(c.Waves)
	if err != nil {
		return fmt.Errorf("create rollout: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO rollouts (id, kind, flavor, version, spec, state, wave, waves,
		created_by, created_ms, updated_ms, rev) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1)`,
		r.ID, r.Spec.Kind, r.Spec.Flavor, r.Spec.Version, string(spec), c.State, int64(c.Wave), string(waves),
		r.CreatedBy, r.Created.UnixMilli(), r.Created.UnixMilli()); err != nil {
		return fmt.Errorf("create rollout %s: %w", r.ID, err)
	}
	if err := s.writeChange(ctx, tx, r.ID, 0, r.Created, c); err != nil {
		return fmt.Errorf("create rollout %s: %w", r.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create rollout %s: commit: %w", r.ID, err)
	}
	return nil
}

// overlaps counts, per active rollout of kind, its members among hosts.
func overlaps(ctx context.Context, tx *sql.Tx, kind string, hosts []Facts) (map[string]int, error) {
	in := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		in[h.Host] = true
	}
	rows, err := tx.QueryContext(ctx, `SELECT rh.rollout_id, rh.host_id FROM rollout_hosts rh
		JOIN rollouts r ON r.id = rh.rollout_id WHERE r.kind = $1 AND r.state IN ($2, $3)`,
		kind, activeStates[0], activeStates[1])
	if err != nil {
		return nil, fmt.Errorf("read active rollouts: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id, host string
		if err := rows.Scan(&id, &host); err != nil {
			return nil, fmt.Errorf("read active rollouts: %w", err)
		}
		if in[host] {
			out[id]++
		}
	}
	return out, rows.Err()
}

// The inserts of the rollout methods.
var (
	upsertMembers = insert{`INSERT INTO rollout_hosts (rollout_id, host_id, hash, wave, state, prev_flavor,
		prev_version, told_ms, healthy_ms)`, colTypes("tttbtttbb"),
		`ON CONFLICT (rollout_id, host_id) DO UPDATE SET wave = excluded.wave, state = excluded.state,
		prev_flavor = excluded.prev_flavor, prev_version = excluded.prev_version, told_ms = excluded.told_ms,
		healthy_ms = excluded.healthy_ms`}
	insDecisions = insert{`INSERT INTO rollout_decisions (rollout_id, seq, time_ms, who, action, wave,
		from_state, to_state, reason)`, colTypes("tbbttbttt"), ""}
	insChanges = insert{"INSERT INTO desired_changes (gen, host_id, time_ms)", colTypes("btb"),
		"ON CONFLICT (gen, host_id) DO NOTHING"}
)

// writeChange writes c's members, decisions (numbered after lastSeq),
// sample and desired-state notices in tx.
func (s *Store) writeChange(ctx context.Context, tx *sql.Tx, id string, lastSeq int, now time.Time, c RolloutChange) error {
	var rows []any
	for _, m := range c.Members {
		rows = append(rows, id, m.Host, m.Hash, int64(m.Wave), m.State, m.PrevFlavor, m.PrevVersion,
			unixMs(m.Told), unixMs(m.HealthySince))
	}
	if err := s.insertRows(ctx, tx, upsertMembers, rows); err != nil {
		return fmt.Errorf("write members: %w", err)
	}
	rows = rows[:0]
	for i, d := range c.Decisions {
		rows = append(rows, id, int64(lastSeq+i+1), d.Time.UnixMilli(), d.Who, d.Action, int64(d.Wave), d.From, d.To,
			clip.String(d.Reason, wire.MaxReasonLen))
	}
	if err := s.insertRows(ctx, tx, insDecisions, rows); err != nil {
		return fmt.Errorf("write decisions: %w", err)
	}
	if c.Sample != nil {
		counts, err := json.Marshal(c.Sample.Counts)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO rollout_samples (rollout_id, time_ms, counts) VALUES ($1, $2, $3)
			ON CONFLICT (rollout_id, time_ms) DO UPDATE SET counts = excluded.counts`,
			id, c.Sample.Time.UnixMilli(), string(counts)); err != nil {
			return fmt.Errorf("write version sample: %w", err)
		}
	}
	return s.notify(ctx, tx, c.Notify, now)
}

// notify records, in tx, that the desired state of hosts may have
// changed: one new generation of desired_gen for them all.
func (s *Store) notify(ctx context.Context, tx *sql.Tx, hosts []string, now time.Time) error {
	if len(hosts) == 0 {
		return nil
	}
	var gen int64
	if err := tx.QueryRowContext(ctx, "UPDATE desired_gen SET gen = gen + 1 WHERE id = 1 RETURNING gen").Scan(&gen); err != nil {
		return fmt.Errorf("bump desired generation: %w", err)
	}
	rows := make([]any, 0, 3*len(hosts))
	for _, h := range slices.Compact(slices.Sorted(slices.Values(hosts))) {
		rows = append(rows, gen, h, now.UnixMilli())
	}
	if err := s.insertRows(ctx, tx, insChanges, rows); err != nil {
		return fmt.Errorf("record desired changes: %w", err)
	}
	return nil
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func msTimeOpt(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return msTime(ms)
}

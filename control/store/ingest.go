package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// Group commit.
//
// Ingest calls do not write themselves: they queue their prepared batch for
// the Store's one writer goroutine, which takes everything queued (up to
// MaxGroup) and commits it in one transaction, a handful of multi-row
// statements whatever the group's size, then answers each caller. While one
// group commits, the next queues up, so the groups grow with the load and
// the cost of a commit (an fsync) is shared.
//
// Correctness comes from the database, not from the writer being alone:
// on PostgreSQL, where several serve replicas share the database, the group
// locks its hosts' rows (SELECT … FOR UPDATE, in id order so that two
// replicas never deadlock) before it reads their last sequence numbers; on
// SQLite the transaction holds the database's write lock from its BEGIN
// IMMEDIATE. Under that lock the writer decides every batch in memory
// (stored, duplicate, or ErrSeqBackwards), so a refused batch writes
// nothing and fails alone. Should the transaction itself fail, the writer
// retries the group batch by batch, so that one bad batch cannot fail the
// others.

// ingestReq is one Ingest call waiting for the writer.
type ingestReq struct {
	ctx   context.Context
	agent string
	now   int64
	recs  []prepRec
	hb    *hostRow // from the batch's newest heartbeat; nil without one
	res   chan ingestRes
}

type ingestRes struct {
	ack wire.Ack
	err error
}

// prepRec is a record turned into column values.
type prepRec struct {
	seq    int64
	event  bool
	timeMs int64
	// heartbeat
	state string
	// event
	kind, message, fields string
}

// hostRow holds the host columns a heartbeat sets.
type hostRow struct {
	seq                         int64
	state, flavor, version      string
	active, healthy             int64
	agentVersion, osBuild       string
	labels, checks, cache       string
	labelMap                    map[string]string
	droppedHB, droppedEv        int64
	intervalMs, lastHeartbeatMs int64
	os, arch, rejected          string
}

// Ingest stores a batch of b.Agent's records (validated by the caller with
// wire.DecodeBatch): each record once per (agent, seq), whatever the
// retries. Records at or below the agent's stored maximum that are stored
// count as Duplicates; one that is not stored refuses the whole batch with
// ErrSeqBackwards. The newest heartbeat updates the host; now becomes its
// last report. Concurrent calls are committed together (see above).
func (s *Store) Ingest(ctx context.Context, b wire.Batch, now time.Time) (wire.Ack, error) {
	req, err := prepare(b, now)
	if err != nil {
		return wire.Ack{}, err
	}
	req.ctx = ctx
	select {
	case <-s.quit:
		return wire.Ack{}, fmt.Errorf("ingest for %s: %w", b.Agent, ErrClosed)
	default:
	}
	select {
	case s.queue <- req:
	case <-s.quit:
		return wire.Ack{}, fmt.Errorf("ingest for %s: %w", b.Agent, ErrClosed)
	case <-ctx.Done():
		return wire.Ack{}, fmt.Errorf("ingest for %s: %w", b.Agent, ctx.Err())
	}
	select {
	case r := <-req.res:
		return r.ack, r.err
	case <-ctx.Done():
		// The writer may still commit the batch; the agent's retry then
		// counts it as duplicates.
		return wire.Ack{}, fmt.Errorf("ingest for %s: %w", b.Agent, ctx.Err())
	case <-s.done:
		select {
		case r := <-req.res:
			return r.ack, r.err
		default:
			return wire.Ack{}, fmt.Errorf("ingest for %s: %w", b.Agent, ErrClosed)
		}
	}
}

// prepare checks what the store relies on and turns the batch into column
// values, in the caller's goroutine so that the writer only writes.
func prepare(b wire.Batch, now time.Time) (*ingestReq, error) {
	if b.Agent == "" {
		return nil, fmt.Errorf("%w: agent: missing", wire.ErrInvalid)
	}
	if len(b.Records) == 0 {
		return nil, fmt.Errorf("%w: records: no records", wire.ErrInvalid)
	}
	req := &ingestReq{agent: b.Agent, now: now.UnixMilli(), recs: make([]prepRec, len(b.Records)), res: make(chan ingestRes, 1)}
	var prev uint64
	for i, r := range b.Records {
		if r.Seq == 0 || r.Seq > math.MaxInt64 || (i > 0 && r.Seq <= prev) {
			return nil, fmt.Errorf("%w: records[%d].seq: %d is not in 1..2^63-1 above the previous record's", wire.ErrInvalid, i, r.Seq)
		}
		prev = r.Seq
		p := prepRec{seq: int64(r.Seq), timeMs: r.Time.UnixMilli()}
		switch {
		case r.Kind == wire.KindHeartbeat && r.Heartbeat != nil:
			p.state = r.Heartbeat.State
		case r.Kind == wire.KindEvent && r.Event != nil:
			fields, err := jsonObject(r.Event.Fields)
			if err != nil {
				return nil, fmt.Errorf("%w: records[%d].event.fields: %v", wire.ErrInvalid, i, err)
			}
			p.event, p.kind, p.message, p.fields = true, r.Event.Kind, r.Event.Message, fields
		default:
			return nil, fmt.Errorf("%w: records[%d]: kind %q without its payload", wire.ErrInvalid, i, r.Kind)
		}
		req.recs[i] = p
	}
	for i := len(b.Records) - 1; i >= 0; i-- {
		if r := b.Records[i]; r.Kind == wire.KindHeartbeat {
			h, err := heartbeatRow(r)
			if err != nil {
				return nil, fmt.Errorf("%w: records[%d].heartbeat: %v", wire.ErrInvalid, i, err)
			}
			req.hb = h
			break
		}
	}
	return req, nil
}

func heartbeatRow(r wire.Record) (*hostRow, error) {
	hb := r.Heartbeat
	labels, err := jsonObject(hb.Labels)
	if err != nil {
		return nil, err
	}
	cache, err := jsonObject(hb.Cache)
	if err != nil {
		return nil, err
	}
	checks, err := jsonList(hb.Checks)
	if err != nil {
		return nil, err
	}
	rejected, err := jsonList(hb.Rejected)
	if err != nil {
		return nil, err
	}
	interval := DefaultInterval.Milliseconds()
	if hb.IntervalSeconds > 0 {
		interval = hb.IntervalSeconds * 1000
	}
	return &hostRow{
		seq:             int64(r.Seq),
		state:           hb.State,
		flavor:          hb.Engine.Flavor,
		version:         hb.Engine.Version,
		active:          boolInt(hb.Engine.Active),
		healthy:         boolInt(hb.Engine.Healthy),
		agentVersion:    hb.AgentVersion,
		osBuild:         hb.OSBuild,
		labels:          labels,
		labelMap:        hb.Labels,
		checks:          checks,
		cache:           cache,
		droppedHB:       clampInt64(hb.Dropped.Heartbeats),
		droppedEv:       clampInt64(hb.Dropped.Events),
		intervalMs:      interval,
		lastHeartbeatMs: r.Time.UnixMilli(),
		os:              hb.OS,
		arch:            hb.Arch,
		rejected:        rejected,
	}, nil
}

// jsonList encodes a list, "[]" when empty.
func jsonList[V any](l []V) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// jsonObject encodes a map with sorted keys, "{}" when empty, so that equal
// label sets compare equal as text.
func jsonObject[V any](m map[string]V) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	return string(b), err
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func clampInt64(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

// writer is the goroutine that commits queued Ingest calls; Close stops it.
func (s *Store) writer() {
	defer close(s.done)
	for {
		var first *ingestReq
		select {
		case first = <-s.queue:
		case <-s.quit:
			for {
				select {
				case r := <-s.queue:
					r.res <- ingestRes{err: fmt.Errorf("ingest for %s: %w", r.agent, ErrClosed)}
				default:
					return
				}
			}
		}
		s.commitGroup(drain(s.queue, []*ingestReq{first}, s.maxGroup))
	}
}

// drain appends to group what q holds now, up to max in all: the
// requests that queued while the last group was served.
func drain[T any](q <-chan T, group []T, max int) []T {
	for len(group) < max {
		select {
		case r := <-q:
			group = append(group, r)
		default:
			return group
		}
	}
	return group
}

// groupTimeout bounds one group's transaction, so that a database that
// hangs fails the callers instead of queueing them for ever.
const groupTimeout = 30 * time.Second

func (s *Store) commitGroup(group []*ingestReq) {
	live := group[:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.res <- ingestRes{err: fmt.Errorf("ingest for %s: %w", r.agent, err)}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	results, err := s.commitTx(ctx, live)
	if err == nil {
		for i, r := range live {
			r.res <- results[i]
		}
		return
	}
	if len(live) == 1 {
		live[0].res <- ingestRes{err: fmt.Errorf("ingest for %s: %w", live[0].agent, err)}
		return
	}
	s.log.Warn("group commit failed; committing its batches one by one", "batches", len(live), "err", err)
	for _, r := range live {
		one, err := s.commitTx(ctx, []*ingestReq{r})
		if err != nil {
			r.res <- ingestRes{err: fmt.Errorf("ingest for %s: %w", r.agent, err)}
			continue
		}
		r.res <- one[0]
	}
}

// hostState is what the group knows of one host under its lock.
type hostState struct {
	exists    bool
	dbLastSeq int64  // as read under the lock
	dbLabels  string // as read under the lock
	lastSeq   int64  // after the group's batches so far
	inDB      map[int64]bool
	inTx      map[int64]bool
	hb        *hostRow // newest new heartbeat of the group
	firstSeen int64
	report    int64 // the last batch's now
	touched   bool
	checkLo   int64
	checkHi   int64
	// heartbeats and events count the records stored since the host was
	// last counted, as read under the lock and then as written (see
	// overCount); prunedSeq and prunedTime are the newest record pruned
	// for its count (see Retention.pruned).
	heartbeats, events    int64
	prunedSeq, prunedTime int64
}

// pruned reports whether rec, at or below the host's last number and not
// stored, is one the store removed: older than the retention keeps its
// kind at now, or among those pruned for the host's count. A retry of one
// is a duplicate; any other record there is a numbering gone back.
func (h *hostState) pruned(rec prepRec, ret Retention, now int64) bool {
	return ret.expired(rec.event, rec.timeMs, now) || (rec.seq <= h.prunedSeq && rec.timeMs <= h.prunedTime)
}

// commitTx commits reqs in one transaction. It returns one result per
// request (an Ack, or ErrSeqBackwards for a refused batch), or an error
// when the transaction failed and nothing was written. The reads and
// writes are here; what they mean is decided by the pure steps
// groupHosts, markChecks, decide and hostWrites.
func (s *Store) commitTx(ctx context.Context, reqs []*ingestReq) ([]ingestRes, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()

	order, agents, hosts := groupHosts(reqs)
	if err := s.lockHosts(ctx, tx, agents, hosts); err != nil {
		return nil, err
	}
	// Which records at or below a host's stored maximum are stored: one
	// query per host that has any (an agent retrying), none otherwise.
	markChecks(reqs, hosts)
	for _, a := range agents {
		h := hosts[a]
		if h.checkHi == 0 {
			continue
		}
		if err := s.storedSeqs(ctx, tx, a, h); err != nil {
			return nil, err
		}
	}
	results, w := decide(reqs, order, hosts, s.retention)

	if err := s.insertRows(ctx, tx, insHistory, w.hist); err != nil {
		return nil, fmt.Errorf("insert history: %w", err)
	}
	if err := s.insertRows(ctx, tx, insEvents, w.evs); err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	if err := s.pruneCounts(ctx, tx, agents, hosts); err != nil {
		return nil, err
	}
	hostWrites(agents, hosts, &w)
	if err := s.insertRows(ctx, tx, upsertHosts, w.full); err != nil {
		return nil, fmt.Errorf("update hosts: %w", err)
	}
	if err := s.insertRows(ctx, tx, touchHosts, w.touch); err != nil {
		return nil, fmt.Errorf("update hosts: %w", err)
	}
	if err := s.inList(ctx, tx, "DELETE FROM host_labels WHERE host_id", w.delLabels, ""); err != nil {
		return nil, fmt.Errorf("update labels: %w", err)
	}
	if err := s.insertRows(ctx, tx, insLabels, w.labels); err != nil {
		return nil, fmt.Errorf("update labels: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return results, nil
}

// groupWrites are the rows a group writes, flattened as insertRows takes
// them: history and events from decide, hosts and labels from hostWrites.
type groupWrites struct {
	hist, evs                      []any
	full, touch, delLabels, labels []any
}

// groupHosts orders the batches by agent (the lock order), each agent's in
// arrival order, and gives every agent a fresh hostState: first seen at its
// first batch's now.
func groupHosts(reqs []*ingestReq) (order []int, agents []string, hosts map[string]*hostState) {
	order = make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(reqs[a].agent, reqs[b].agent) })
	hosts = map[string]*hostState{}
	for _, i := range order {
		r := reqs[i]
		if hosts[r.agent] == nil {
			hosts[r.agent] = &hostState{firstSeen: r.now, checkLo: math.MaxInt64}
			agents = append(agents, r.agent)
		}
	}
	return order, agents, hosts
}

// markChecks sets each host's checkLo..checkHi to the range of the group's
// records at or below its stored maximum: those that may be retries, whose
// storage storedSeqs must read. checkHi stays 0 when there are none.
func markChecks(reqs []*ingestReq, hosts map[string]*hostState) {
	for _, r := range reqs {
		h := hosts[r.agent]
		for _, rec := range r.recs {
			if rec.seq <= h.dbLastSeq {
				h.checkLo = min(h.checkLo, rec.seq)
				h.checkHi = max(h.checkHi, rec.seq)
			}
		}
	}
}

// decide settles every batch in memory, in order: a batch with a record
// below its host's last that was never stored, nor pruned (see
// hostState.pruned), is refused whole (ErrSeqBackwards); otherwise records
// above the last are stored and the rest count as duplicates. It advances
// the hosts' state and returns the history and event rows to insert.
func decide(reqs []*ingestReq, order []int, hosts map[string]*hostState, ret Retention) ([]ingestRes, groupWrites) {
	results := make([]ingestRes, len(reqs))
	var w groupWrites
	for _, i := range order {
		r := reqs[i]
		h := hosts[r.agent]
		var bad error
		for _, rec := range r.recs {
			if rec.seq <= h.lastSeq && !h.inDB[rec.seq] && !h.inTx[rec.seq] && !h.pruned(rec, ret, r.now) {
				bad = fmt.Errorf("ingest for %s: record %d is below the stored %d and was never stored: %w", r.agent, rec.seq, h.lastSeq, ErrSeqBackwards)
				break
			}
		}
		if bad != nil {
			results[i] = ingestRes{err: bad}
			continue
		}
		ack := wire.Ack{Agent: r.agent}
		before := h.lastSeq
		for _, rec := range r.recs {
			if rec.seq <= before {
				ack.Duplicates++
				continue
			}
			ack.Stored++
			if h.inTx == nil {
				h.inTx = map[int64]bool{}
			}
			h.inTx[rec.seq] = true
			h.lastSeq = rec.seq
			if rec.event {
				h.events++
				w.evs = append(w.evs, r.agent, rec.seq, rec.timeMs, r.now, rec.kind, rec.message, rec.fields)
			} else {
				h.heartbeats++
				w.hist = append(w.hist, r.agent, rec.seq, rec.timeMs, r.now, rec.state)
			}
		}
		if r.hb != nil && r.hb.seq > before {
			h.hb = r.hb
		}
		h.report = r.now
		h.touched = true
		ack.UpTo = uint64(h.lastSeq)
		results[i] = ingestRes{ack: ack}
	}
	return results, w
}

// hostWrites adds to w the host rows of the hosts decide touched: the full
// row from a new heartbeat (and its labels, replaced only when they
// changed), else only the report time and last sequence number.
func hostWrites(agents []string, hosts map[string]*hostState, w *groupWrites) {
	for _, a := range agents {
		h := hosts[a]
		if !h.touched {
			continue
		}
		hb := h.hb
		if hb == nil {
			w.touch = append(w.touch, a, DefaultInterval.Milliseconds(), h.firstSeen, h.report, h.lastSeq,
				h.heartbeats, h.events, h.prunedSeq, h.prunedTime)
			continue
		}
		w.full = append(w.full, a, hb.state, hb.flavor, hb.version, hb.active, hb.healthy, hb.agentVersion, hb.osBuild,
			hb.labels, hb.checks, hb.cache, hb.droppedHB, hb.droppedEv, hb.intervalMs, h.firstSeen, h.report,
			hb.lastHeartbeatMs, h.lastSeq, h.heartbeats, h.events, h.prunedSeq, h.prunedTime, hb.os, hb.arch, hb.rejected)
		if hb.labels != h.dbLabels {
			if h.exists {
				w.delLabels = append(w.delLabels, a)
			}
			for _, k := range slices.Sorted(maps.Keys(hb.labelMap)) {
				w.labels = append(w.labels, a, k, hb.labelMap[k])
			}
		}
	}
}

// lockHosts reads, and on PostgreSQL locks, the rows of agents (sorted).
// On PostgreSQL a host seen for the first time gets its row first, empty,
// so that there is a row to lock: two replicas taking the same new agent's
// first batches then queue on it instead of both storing them.
func (s *Store) lockHosts(ctx context.Context, tx *sql.Tx, agents []string, hosts map[string]*hostState) error {
	read := func(ids []any) error {
		suffix := "ORDER BY id"
		if s.d == dialectPostgres {
			suffix += " FOR UPDATE"
		}
		return s.inListQuery(ctx, tx, "SELECT id, last_seq, labels, heartbeats, events, pruned_seq, pruned_time_ms FROM hosts WHERE id", ids, suffix, func(rows *sql.Rows) error {
			var id, labels string
			var seq, hbs, evs, pseq, ptime int64
			if err := rows.Scan(&id, &seq, &labels, &hbs, &evs, &pseq, &ptime); err != nil {
				return err
			}
			if h := hosts[id]; h != nil {
				h.exists, h.dbLastSeq, h.lastSeq, h.dbLabels = true, seq, seq, labels
				h.heartbeats, h.events, h.prunedSeq, h.prunedTime = hbs, evs, pseq, ptime
			}
			return nil
		})
	}
	ids := make([]any, len(agents))
	for i, a := range agents {
		ids[i] = a
	}
	if err := read(ids); err != nil {
		return fmt.Errorf("lock hosts: %w", err)
	}
	if s.d != dialectPostgres {
		return nil
	}
	var missing, rows []any
	for _, a := range agents {
		if h := hosts[a]; !h.exists {
			missing = append(missing, a)
			rows = append(rows, a, DefaultInterval.Milliseconds(), h.firstSeen, h.firstSeen)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := s.insertRows(ctx, tx, newHosts, rows); err != nil {
		return fmt.Errorf("create hosts: %w", err)
	}
	if err := read(missing); err != nil {
		return fmt.Errorf("lock new hosts: %w", err)
	}
	for _, a := range missing {
		if h := hosts[a.(string)]; !h.exists {
			return fmt.Errorf("lock hosts: row of %s missing after insert", a)
		}
	}
	return nil
}

// storedSeqs reads which of h's sequence numbers in checkLo..checkHi are
// stored, as history or as events.
func (s *Store) storedSeqs(ctx context.Context, tx *sql.Tx, agent string, h *hostState) error {
	rows, err := tx.QueryContext(ctx, `SELECT seq FROM history WHERE host_id = $1 AND seq BETWEEN $2 AND $3
		UNION ALL SELECT seq FROM events WHERE host_id = $1 AND seq BETWEEN $2 AND $3`, agent, h.checkLo, h.checkHi)
	if err != nil {
		return fmt.Errorf("read stored records of %s: %w", agent, err)
	}
	defer rows.Close()
	h.inDB = map[int64]bool{}
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return fmt.Errorf("read stored records of %s: %w", agent, err)
		}
		h.inDB[seq] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read stored records of %s: %w", agent, err)
	}
	return nil
}

// pruneCounts prunes, in tx, the oldest records of the hosts that may
// hold more than the retention's count of a kind (overCount), and sets
// their counts and pruned marks for hostWrites.
func (s *Store) pruneCounts(ctx context.Context, tx *sql.Tx, agents []string, hosts map[string]*hostState) error {
	for _, a := range agents {
		h := hosts[a]
		for _, k := range []struct {
			table string
			bound int64
			count *int64
		}{{"history", s.retention.HeartbeatsPerHost, &h.heartbeats}, {"events", s.retention.EventsPerHost, &h.events}} {
			if !overCount(*k.count, k.bound) {
				continue
			}
			kept, seq, t, err := pruneCount(ctx, tx, k.table, a, k.bound)
			if err != nil {
				return fmt.Errorf("prune %s of %s to %d: %w", k.table, a, k.bound, err)
			}
			*k.count = kept
			h.prunedSeq, h.prunedTime = max(h.prunedSeq, seq), max(h.prunedTime, t)
		}
	}
	return nil
}

// pruneCount deletes agent's oldest rows of table beyond bound and returns
// how many rows are kept, and the highest number and time deleted (0 when
// none were).
func pruneCount(ctx context.Context, tx *sql.Tx, table, agent string, bound int64) (kept, seq, t int64, err error) {
	var n int64
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE host_id = $1", agent).Scan(&n); err != nil {
		return 0, 0, 0, err
	}
	if n <= bound {
		return n, 0, 0, nil
	}
	if err := tx.QueryRowContext(ctx, "SELECT MAX(seq), MAX(time_ms) FROM (SELECT seq, time_ms FROM "+table+
		" WHERE host_id = $1 ORDER BY seq LIMIT $2) AS oldest", agent, n-bound).Scan(&seq, &t); err != nil {
		return 0, 0, 0, err
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE host_id = $1 AND seq <= $2", agent, seq); err != nil {
		return 0, 0, 0, err
	}
	return bound, seq, t, nil
}

// param writes the i-th (from 1) placeholder of a generated statement:
// $i on PostgreSQL, a bare ? on SQLite, whose parser looks a named
// parameter ($i) up in a list, which makes a statement with thousands of
// them quadratic to prepare.
func (s *Store) param(b *strings.Builder, i int) {
	if s.d == dialectSQLite {
		b.WriteByte('?')
		return
	}
	b.WriteByte('$')
	b.WriteString(strconv.Itoa(i))
}

// insertRows runs ins for args, rows of len(ins.types) values one after
// another. On PostgreSQL it sends one statement whatever the rows: INSERT
// … SELECT * FROM unnest($1::type[], …), one array per column. A multi-row VALUES list of one parameter per
// value, as it once sent, cost PostgreSQL more to parse and plan than to
// execute (the planner copies the list several times over); arrays keep
// the plan as small for a thousand rows as for one. On SQLite, in
// process, a round trip costs nothing and parsing a statement of
// thousands of parameters costs much: it runs one prepared single-row
// statement per row.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, ins insert, args []any) error {
	if len(args) == 0 {
		return nil
	}
	if s.d == dialectPostgres {
		cols, err := columns(ins.types, args)
		if err != nil {
			return fmt.Errorf("%s: %w", ins.head, err)
		}
		_, err = tx.ExecContext(ctx, ins.head+" SELECT * FROM unnest("+arrayParams(ins.types)+") "+ins.tail, cols...)
		return err
	}
	stmt := s.stmts[ins.head]
	if stmt == nil {
		return fmt.Errorf("statement %q not prepared", ins.head)
	}
	st := tx.StmtContext(ctx, stmt)
	for ; len(args) > 0; args = args[len(ins.types):] {
		if _, err := st.ExecContext(ctx, args[:len(ins.types)]...); err != nil {
			return err
		}
	}
	return nil
}

// columns turns args, rows of len(types) values, into one slice per
// column: []string for text, []int64 for bigint, as arrays are sent.
func columns(types []string, args []any) ([]any, error) {
	cols := make([]any, len(types))
	var err error
	for c, t := range types {
		switch t {
		case "text":
			cols[c], err = column[string](args, c, len(types))
		case "bigint":
			cols[c], err = column[int64](args, c, len(types))
		default:
			err = fmt.Errorf("column %d: type %q has no array form", c, t)
		}
		if err != nil {
			return nil, err
		}
	}
	return cols, nil
}

// column is column c of args, rows of width values, as a []T.
func column[T any](args []any, c, width int) ([]T, error) {
	col := make([]T, len(args)/width)
	for r := range col {
		v, ok := args[r*width+c].(T)
		if !ok {
			return nil, fmt.Errorf("column %d row %d: %T, want a %T", c, r, args[r*width+c], v)
		}
		col[r] = v
	}
	return col, nil
}

// arrayParams is "$1::text[], $2::bigint[], …" for types.
func arrayParams(types []string) string {
	var b strings.Builder
	for i, t := range types {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(i + 1))
		b.WriteString("::")
		b.WriteString(t)
		b.WriteString("[]")
	}
	return b.String()
}

// insert is a statement insertRows runs for many rows.
type insert struct {
	head  string   // INSERT INTO t (columns)
	types []string // the columns' types: text or bigint
	tail  string   // ON CONFLICT …
}

// colTypes spells an insert's column types, t for text and b for bigint.
func colTypes(tb string) []string {
	out := make([]string, len(tb))
	for i, c := range tb {
		out[i] = map[rune]string{'t': "text", 'b': "bigint"}[c]
	}
	return out
}

// The inserts of Ingest.
var (
	insHistory = insert{"INSERT INTO history (host_id, seq, time_ms, received_ms, state)", colTypes("tbbbt"),
		"ON CONFLICT (host_id, seq) DO NOTHING"}
	insEvents = insert{"INSERT INTO events (host_id, seq, time_ms, received_ms, kind, message, fields)", colTypes("tbbbttt"),
		"ON CONFLICT (host_id, seq) DO NOTHING"}
	upsertHosts = insert{`INSERT INTO hosts (id, state, engine_flavor, engine_version, engine_active,
		engine_healthy, agent_version, os_build, labels, checks, cache, dropped_heartbeats, dropped_events,
		interval_ms, first_seen_ms, last_report_ms, last_heartbeat_ms, last_seq, heartbeats, events,
		pruned_seq, pruned_time_ms, os, arch, rejected)`, colTypes("ttttbbttttt" + "bbbbbbbbbbb" + "ttt"),
		`ON CONFLICT (id) DO UPDATE SET state = excluded.state, engine_flavor = excluded.engine_flavor,
		engine_version = excluded.engine_version, engine_active = excluded.engine_active,
		engine_healthy = excluded.engine_healthy, agent_version = excluded.agent_version,
		os_build = excluded.os_build, labels = excluded.labels, checks = excluded.checks, cache = excluded.cache,
		dropped_heartbeats = excluded.dropped_heartbeats, dropped_events = excluded.dropped_events,
		interval_ms = excluded.interval_ms, last_report_ms = excluded.last_report_ms,
		last_heartbeat_ms = excluded.last_heartbeat_ms, last_seq = excluded.last_seq,
		heartbeats = excluded.heartbeats, events = excluded.events, pruned_seq = excluded.pruned_seq,
		pruned_time_ms = excluded.pruned_time_ms, os = excluded.os, arch = excluded.arch,
		rejected = excluded.rejected`}
	touchHosts = insert{`INSERT INTO hosts (id, interval_ms, first_seen_ms, last_report_ms, last_seq, heartbeats, events,
		pruned_seq, pruned_time_ms)`, colTypes("tbbbbbbbb"),
		`ON CONFLICT (id) DO UPDATE SET last_report_ms = excluded.last_report_ms, last_seq = excluded.last_seq,
		heartbeats = excluded.heartbeats, events = excluded.events, pruned_seq = excluded.pruned_seq,
		pruned_time_ms = excluded.pruned_time_ms`}
	newHosts  = insert{"INSERT INTO hosts (id, interval_ms, first_seen_ms, last_report_ms)", colTypes("tbbb"), "ON CONFLICT (id) DO NOTHING"}
	insLabels = insert{"INSERT INTO host_labels (host_id, key, value)", colTypes("ttt"), ""}
	inserts   = []insert{insHistory, insEvents, upsertHosts, touchHosts, newHosts, insLabels,
		upsertMembers, insDecisions, insChanges}
)

// prepareInserts prepares the inserts on SQLite's one writer connection,
// before the writer starts: inside a transaction, which holds that
// connection, preparing would wait for it for ever.
func (s *Store) prepareInserts(ctx context.Context) error {
	s.stmts = map[string]*sql.Stmt{}
	for _, ins := range inserts {
		st, err := s.w.PrepareContext(ctx, ins.head+" VALUES "+s.placeholders("", len(ins.types), ins.tail))
		if err != nil {
			return fmt.Errorf("prepare %s: %w", ins.head, err)
		}
		s.stmts[ins.head] = st
	}
	return nil
}

// inList runs head IN (ids) tail for ids; head ends with the column.
func (s *Store) inList(ctx context.Context, tx *sql.Tx, head string, ids []any, tail string) error {
	return s.eachChunk(ids, func(q string, args []any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}, head, tail)
}

// inListQuery runs the query head IN (ids) tail, calling scan for each
// row; head ends with the column.
func (s *Store) inListQuery(ctx context.Context, tx querier, head string, ids []any, tail string, scan func(*sql.Rows) error) error {
	return s.eachChunk(ids, func(q string, args []any) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return err
			}
		}
		return errors.Join(rows.Err(), rows.Close())
	}, head, tail)
}

// querier is what reads run on: a transaction or a pool.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// eachChunk calls run with the statement head IN (ids) tail and its
// arguments: on PostgreSQL once, with the ids as one array (= ANY($1),
// which plans as cheaply for a thousand ids as for one); on SQLite in
// chunks of a thousand placeholders.
func (s *Store) eachChunk(ids []any, run func(q string, args []any) error, head, tail string) error {
	if s.d == dialectPostgres {
		strs := make([]string, len(ids))
		for i, id := range ids {
			strs[i], _ = id.(string)
		}
		return run(head+" = ANY($1::text[]) "+tail, []any{strs})
	}
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		if err := run(s.placeholders(head+" IN", n, tail), ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

func (s *Store) placeholders(head string, n int, tail string) string {
	var b strings.Builder
	b.WriteString(head)
	b.WriteString(" (")
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		s.param(&b, i)
	}
	b.WriteString(") ")
	b.WriteString(tail)
	return b.String()
}

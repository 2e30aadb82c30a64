package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/clip"
)

// Binding is what an agent id is bound to: the identity whose tokens may
// write its reports. Entra tokens carry no VM id, so the first agent id an
// identity writes as becomes its only one (trust on first use), and that
// agent id then takes no other identity's reports.
type Binding struct {
	Agent string
	// Subject names the identity: "azure:<resource id>" for a managed
	// identity whose token names its resource (xms_mirid), "entra:<oid>"
	// for other Entra principals. One subject, one agent.
	Subject string
	// ObjectID is the Entra object id that presents Subject now, when
	// Subject names a resource. A resource that is deleted and created
	// again under the same id (a VM rebuilt from a template) has a new
	// identity, a new object id and a new VM id; a token of a different
	// object id than the binding recorded, issued after the binding was
	// made, moves the resource's binding to the agent id it writes as.
	ObjectID string
	// Issued is when the presenting token was issued (iat): a token of
	// the resource's former identity, issued before the binding moved,
	// cannot move it back.
	Issued time.Time
	// Formerly is the subject the agent may already be bound to from
	// before resources were bound ("entra:<oid>" of the same token);
	// Subject replaces it.
	Formerly string
}

// BindIdentity binds agent to subject: Bind without a resource.
func (s *Store) BindIdentity(ctx context.Context, agent, subject string) error {
	return s.Bind(ctx, Binding{Agent: agent, Subject: subject})
}

// Bind binds b.Agent to b.Subject, trusting the first use (see Binding).
// The same pair again is fine; an agent bound to another subject, or a
// subject bound to another agent, is ErrIdentityMismatch. Unique
// constraints decide races, also between serve replicas sharing a
// PostgreSQL database.
func (s *Store) Bind(ctx context.Context, b Binding) error {
	if b.Agent == "" || b.Subject == "" {
		return fmt.Errorf("bind identity: agent %q and subject %q must both be set", clip.String(b.Agent, quoteLen), clip.String(b.Subject, quoteLen))
	}
	// A binding seen in the database changes only when its resource gets
	// a new identity, which changes the key, or another replica moves it
	// away, which is seen within boundTTL.
	key := b.Subject + "\x00" + b.ObjectID
	now := time.Now()
	if v, ok := s.bound.Load(b.Agent); ok && v.(seenBinding).key == key && now.Sub(v.(seenBinding).at) < boundTTL {
		return nil
	}
	db := s.r
	for attempt := 0; attempt < 3; attempt++ {
		rows, err := s.bindings(ctx, db, b)
		if err != nil {
			return err
		}
		a, err := decideBinding(b, rows)
		if err != nil || a.kind == bindDone {
			if err == nil {
				s.bound.Store(b.Agent, seenBinding{key: key, at: now})
			}
			return err
		}
		if err := s.applyBinding(ctx, b, a); err != nil {
			return err
		}
		// Whoever won a race, the rows now say what is bound; read them
		// through the writer, which saw its own change.
		db = s.w
	}
	return fmt.Errorf("bind identity of %q: the binding kept changing under concurrent writers; retry", clip.String(b.Agent, quoteLen))
}

// boundTTL is how long Bind trusts a binding it read.
const boundTTL = 5 * time.Minute

// seenBinding is an entry of Store.bound.
type seenBinding struct {
	key string
	at  time.Time
}

// identityRow is a row of the identities table.
type identityRow struct {
	Agent, Subject, ObjectID string
	Bound                    time.Time
}

// bindings reads the rows that bear on b: the agent's, the subject's and
// the former subject's.
func (s *Store) bindings(ctx context.Context, db *sql.DB, b Binding) ([]identityRow, error) {
	q, err := db.QueryContext(ctx, "SELECT agent, subject, object_id, bound_ms FROM identities WHERE agent = $1 OR subject = $2 OR subject = $3",
		b.Agent, b.Subject, b.Formerly)
	if err != nil {
		return nil, fmt.Errorf("bind identity of %q: %w", clip.String(b.Agent, quoteLen), err)
	}
	defer q.Close()
	var rows []identityRow
	for q.Next() {
		var r identityRow
		var bound int64
		if err := q.Scan(&r.Agent, &r.Subject, &r.ObjectID, &bound); err != nil {
			return nil, fmt.Errorf("bind identity of %q: %w", clip.String(b.Agent, quoteLen), err)
		}
		r.Bound = msTime(bound)
		rows = append(rows, r)
	}
	if err := q.Err(); err != nil {
		return nil, fmt.Errorf("bind identity of %q: %w", clip.String(b.Agent, quoteLen), err)
	}
	return rows, nil
}

// bindKind is what Bind does next.
type bindKind int

const (
	bindDone    bindKind = iota // bound as asked already
	bindInsert                  // nothing bound: bind
	bindRecord                  // bound; record the identity's new object id
	bindUpgrade                 // bound to Formerly: rewrite to Subject
	bindMove                    // the resource has a new identity: move its binding
)

// bindAction is decideBinding's answer; old is the row it changes.
type bindAction struct {
	kind bindKind
	old  identityRow
}

// decideBinding decides, from the rows bindings read, whether b holds,
// what to write to make it hold, or why it cannot (ErrIdentityMismatch).
func decideBinding(b Binding, rows []identityRow) (bindAction, error) {
	var mine, theirs *identityRow
	for i := range rows {
		r := &rows[i]
		switch {
		case r.Agent == b.Agent:
			mine = r
		case r.Subject == b.Subject || b.Formerly != "" && r.Subject == b.Formerly:
			theirs = r
		}
	}
	agent := clip.String(b.Agent, quoteLen)
	switch {
	case mine != nil && theirs == nil && mine.Subject == b.Subject:
		if b.ObjectID != "" && mine.ObjectID != b.ObjectID {
			return bindAction{kind: bindRecord, old: *mine}, nil
		}
		return bindAction{kind: bindDone}, nil
	case mine != nil && theirs == nil && b.Formerly != "" && mine.Subject == b.Formerly:
		return bindAction{kind: bindUpgrade, old: *mine}, nil
	case mine != nil && theirs == nil:
		return bindAction{}, fmt.Errorf("agent %q is bound to another identity (%s): %w", agent, clip.String(mine.Subject, quoteLen), ErrIdentityMismatch)
	case mine == nil && theirs != nil && theirs.Subject == b.Subject && b.ObjectID != "" && theirs.ObjectID != "" &&
		theirs.ObjectID != b.ObjectID && b.Issued.After(theirs.Bound):
		return bindAction{kind: bindMove, old: *theirs}, nil
	case theirs != nil:
		return bindAction{}, fmt.Errorf("identity %s is bound to agent %q, not %q: %w", clip.String(theirs.Subject, quoteLen), clip.String(theirs.Agent, quoteLen), agent, ErrIdentityMismatch)
	}
	return bindAction{kind: bindInsert}, nil
}

// applyBinding writes what decideBinding asked for. Every change is
// conditional on the row it read, so a concurrent writer's change makes it
// a no-op and the next read decides again.
func (s *Store) applyBinding(ctx context.Context, b Binding, a bindAction) error {
	now := time.Now().UnixMilli()
	var err error
	switch a.kind {
	case bindInsert:
		_, err = s.w.ExecContext(ctx, "INSERT INTO identities (agent, subject, object_id, bound_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
			b.Agent, b.Subject, b.ObjectID, now)
	case bindRecord:
		_, err = s.w.ExecContext(ctx, "UPDATE identities SET object_id = $1 WHERE agent = $2 AND subject = $3 AND object_id = $4",
			b.ObjectID, b.Agent, b.Subject, a.old.ObjectID)
	case bindUpgrade:
		_, err = s.w.ExecContext(ctx, "UPDATE identities SET subject = $1, object_id = $2, bound_ms = $3 WHERE agent = $4 AND subject = $5",
			b.Subject, b.ObjectID, now, b.Agent, b.Formerly)
	case bindMove:
		s.log.Info("a managed identity's resource has a new identity: its binding moves to the agent the new identity writes as",
			"resource", b.Subject, "fromAgent", a.old.Agent, "toAgent", b.Agent, "fromObjectID", a.old.ObjectID, "toObjectID", b.ObjectID)
		err = s.moveBinding(ctx, b, a.old, now)
		s.bound.Delete(a.old.Agent)
	}
	if err != nil && !isUniqueViolation(err) {
		return fmt.Errorf("bind identity of %q: %w", clip.String(b.Agent, quoteLen), err)
	}
	return nil
}

// moveBinding deletes the resource's old binding and binds b, in one
// transaction.
func (s *Store) moveBinding(ctx context.Context, b Binding, old identityRow, now int64) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM identities WHERE agent = $1 AND subject = $2 AND object_id = $3", old.Agent, old.Subject, old.ObjectID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO identities (agent, subject, object_id, bound_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
		b.Agent, b.Subject, b.ObjectID, now); err != nil {
		return err
	}
	return tx.Commit()
}

// isUniqueViolation reports a unique constraint that a concurrent writer
// won: the next read sees its row.
func isUniqueViolation(err error) bool {
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) && coded.SQLState() == "23505" {
		return true
	}
	var sqlite interface{ Code() int }
	// SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY.
	return errors.As(err, &sqlite) && (sqlite.Code() == 2067 || sqlite.Code() == 1555)
}

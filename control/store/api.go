// Package store is the control endpoint's database: the hosts and the
// records they report, and the tokens berth-control issues. It answers the
// read API with control/wire's types. One Store type
// runs on SQLite (modernc.org/sqlite, the embedded default) and on
// PostgreSQL (pgx), and one conformance suite holds both to the same
// behaviour.
package store

import (
	"errors"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// Errors of Store, checked with errors.Is.
var (
	// ErrNotFound: no such host or token (wire.ErrNotFound, so a caller of
	// the read API checks one value whether it asked the store or the
	// server).
	ErrNotFound = wire.ErrNotFound
	// ErrSeqBackwards: a batch carries a record numbered below what is
	// stored for the agent that is not itself stored — an agent whose
	// numbering went back, never an honest retry. The server answers 409.
	ErrSeqBackwards = errors.New("sequence number goes backwards")
	// ErrIdentityMismatch: the agent id is bound to another token subject,
	// or the subject to another agent id. The server answers 403.
	ErrIdentityMismatch = errors.New("identity bound to another agent")
	// ErrRevoked: the token was revoked, or the session was ended or the
	// token that opened it revoked.
	ErrRevoked = errors.New("token revoked")
	// ErrExpired: the session's time is up.
	ErrExpired = errors.New("session expired")
	// ErrBadFilter is wire.ErrBadFilter: a HostFilter the store refuses.
	ErrBadFilter = wire.ErrBadFilter
)

// StaleAfter is how many report intervals without a report turn a host
// Stale (wire.StateStale).
const StaleAfter = 3

// DefaultInterval is assumed for a host whose heartbeat gave none.
const DefaultInterval = 60 * time.Second

// Role is what a token may do.
type Role string

// The roles.
const (
	RoleAgent    Role = "agent"
	RoleOperator Role = "operator"
)

// Token is an issued token as stored: never the secret, only its hash.
type Token struct {
	ID string `json:"id"`
	// Role and Subject: an agent token writes as agent Subject; an
	// operator token reads and steers as operator Subject.
	Role    Role       `json:"role"`
	Subject string     `json:"subject"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Package store is the control endpoint's database: the hosts and the
// records they report, and the tokens berth-control issues. One Store type
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
	// ErrNotFound: no such host or token.
	ErrNotFound = errors.New("not found")
	// ErrSeqBackwards: a batch carries a record numbered below what is
	// stored for the agent that is not itself stored — an agent whose
	// numbering went back, never an honest retry. The server answers 409.
	ErrSeqBackwards = errors.New("sequence number goes backwards")
	// ErrIdentityMismatch: the agent id is bound to another token subject,
	// or the subject to another agent id. The server answers 403.
	ErrIdentityMismatch = errors.New("identity bound to another agent")
	// ErrRevoked: the token was revoked.
	ErrRevoked = errors.New("token revoked")
)

// StaleAfter is how many report intervals without a report turn a host
// Stale.
const StaleAfter = 3

// StateStale is the state of a host that stopped reporting; the others are
// the agent's own (wire.Heartbeat.State).
const StateStale = "Stale"

// DefaultInterval is assumed for a host whose heartbeat gave none.
const DefaultInterval = 60 * time.Second

// Host is one host as its last heartbeat and the store's clock describe it.
type Host struct {
	ID string `json:"id"`
	// State is the last heartbeat's state, or Stale when no record came
	// for StaleAfter intervals. A host known only by its events (no
	// heartbeat yet) is Initializing, with DefaultInterval.
	State string `json:"state"`
	// ReportedState is the last heartbeat's state even when Stale.
	ReportedState string             `json:"reportedState"`
	Engine        wire.Engine        `json:"engine"`
	AgentVersion  string             `json:"agentVersion"`
	OSBuild       string             `json:"osBuild,omitempty"`
	Labels        map[string]string  `json:"labels,omitempty"`
	Checks        []wire.Check       `json:"checks,omitempty"`
	Cache         map[string]float64 `json:"cache,omitempty"`
	Dropped       wire.Dropped       `json:"dropped,omitzero"`
	Interval      time.Duration      `json:"interval"`
	// LastReport is when the store last received a record of the host (its
	// own clock); LastHeartbeat the time the last heartbeat carried.
	LastReport    time.Time `json:"lastReport"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
	FirstSeen     time.Time `json:"firstSeen"`
	LastSeq       uint64    `json:"lastSeq"`
}

// HostFilter selects and orders hosts. The zero value is every host by id,
// DefaultLimit at a time.
type HostFilter struct {
	// Labels must all match exactly.
	Labels map[string]string
	// State is Healthy, Degraded, Unhealthy, Initializing or Stale.
	State         string
	EngineVersion string
	AgentVersion  string
	// Sort is one of id, state, engineVersion, agentVersion, lastReport;
	// a leading "-" reverses it. Ties are broken by id (reversed too, so
	// "-x" lists exactly the reverse of "x"). Text compares bytewise.
	Sort string
	// Limit is at most MaxLimit; 0 means DefaultLimit.
	Limit int
	// Cursor is HostPage.Next of the previous page; "" for the first.
	Cursor string
}

// Paging limits of Hosts.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// HostPage is one page of hosts.
type HostPage struct {
	Hosts []Host `json:"hosts"`
	// Next is the cursor of the next page, "" on the last.
	Next string `json:"next,omitempty"`
	// Total is how many hosts match the filter.
	Total int `json:"total"`
}

// HostDetail is one host with its recent history.
type HostDetail struct {
	Host
	// History is the newest heartbeats' states, newest first.
	History []HealthPoint `json:"history"`
	// Events are the newest events, newest first.
	Events []EventRecord `json:"events"`
}

// HealthPoint is the state one heartbeat reported.
type HealthPoint struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	State    string    `json:"state"`
	Received time.Time `json:"received"`
}

// EventRecord is one stored event.
type EventRecord struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Received time.Time `json:"received"`
	wire.Event
}

// Counts are the fleet's hosts by state and by version, for the dashboard.
type Counts struct {
	Total           int            `json:"total"`
	ByState         map[string]int `json:"byState"`
	ByEngineVersion map[string]int `json:"byEngineVersion"`
	ByAgentVersion  map[string]int `json:"byAgentVersion"`
}

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

// ErrBadFilter: a HostFilter with an unknown state or sort key, or a
// cursor this store did not make. The server answers 400.
var ErrBadFilter = errors.New("bad host filter")

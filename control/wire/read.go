package wire

import (
	"errors"
	"time"
)

// The operator's read API: GET /v1/hosts answers a HostPage, GET
// /v1/hosts/{id} a HostDetail and GET /v1/counts Counts. The types live
// here, not with the store that fills them, so the client and the web page
// use them without linking a SQL driver.

// Errors of the read API, checked with errors.Is; the store returns them
// and the client maps a 404 to ErrNotFound.
var (
	// ErrNotFound: no such host (or, in the store, token).
	ErrNotFound = errors.New("not found")
	// ErrBadFilter: a HostFilter with an unknown state or sort key, or a
	// cursor the store did not make. The server answers 400.
	ErrBadFilter = errors.New("bad host filter")
)

// StateStale is the state of a host that stopped reporting; the others are
// the agent's own (Heartbeat.State).
const StateStale = "Stale"

// Paging limits of GET /v1/hosts.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Host is one host as its last heartbeat and the store's clock describe it.
type Host struct {
	ID string `json:"id"`
	// State is the last heartbeat's state, or Stale when no record came
	// for three intervals. A host known only by its events (no heartbeat
	// yet) is Initializing, with the default interval.
	State string `json:"state"`
	// ReportedState is the last heartbeat's state even when Stale.
	ReportedState string `json:"reportedState"`
	Engine        Engine `json:"engine"`
	AgentVersion  string `json:"agentVersion"`
	OSBuild       string `json:"osBuild,omitempty"`
	OS            string `json:"os,omitempty"`
	Arch          string `json:"arch,omitempty"`
	// Pin is the host's pins, when it has any.
	Pin      *Pin               `json:"pin,omitempty"`
	Rejected []Rejected         `json:"rejected,omitempty"`
	Labels   map[string]string  `json:"labels,omitempty"`
	Checks   []Check            `json:"checks,omitempty"`
	Cache    map[string]float64 `json:"cache,omitempty"`
	Dropped  Dropped            `json:"dropped,omitzero"`
	// Interval is the host's report interval, in nanoseconds on the wire
	// (version 1 says so; the CLI prints it as "1m0s").
	Interval time.Duration `json:"interval"`
	// LastReport is when the store last received a record of the host (its
	// own clock); LastHeartbeat the time the last heartbeat carried.
	LastReport    time.Time `json:"lastReport"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
	FirstSeen     time.Time `json:"firstSeen"`
	LastSeq       uint64    `json:"lastSeq"`
}

// HostFilter selects and orders hosts; GET /v1/hosts takes it as the query
// parameters label (repeated KEY=VALUE), state, engineVersion,
// agentVersion, sort, limit and cursor. The zero value is every host by
// id, DefaultLimit at a time.
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
	Event
}

// Counts are the fleet's hosts by state and by version, for the dashboard.
type Counts struct {
	Total           int            `json:"total"`
	ByState         map[string]int `json:"byState"`
	ByEngineVersion map[string]int `json:"byEngineVersion"`
	ByAgentVersion  map[string]int `json:"byAgentVersion"`
}

// Forgotten is the answer of DELETE /v1/hosts/{id} (berth-control hosts
// forget): the host's row is gone, so its next records are accepted
// whatever their numbers, as a new host's. Its heartbeats and events are
// kept unless HistoryDropped, and Heartbeats and Events count those
// deleted.
type Forgotten struct {
	ID             string `json:"id"`
	HistoryDropped bool   `json:"historyDropped"`
	Heartbeats     int64  `json:"heartbeats"`
	Events         int64  `json:"events"`
}

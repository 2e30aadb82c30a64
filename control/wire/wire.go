// Package wire is version 1 of the JSON the agent and the control endpoint
// exchange.
//
// It imports neither the agent nor the server: both import it, so a field
// added here is added for both sides at once. A change that an older peer
// would misread is a new version (a new package and a new path under /v2/),
// never an edit here.
//
// The agent sends a Batch of numbered Records to POST /v1/reports; the
// endpoint answers with an Ack, or with an Error and a 4xx/5xx status.
// Records are numbered per agent by the agent's durable outbox; the
// endpoint stores a record once per (agent, seq), whatever the retries.
package wire

import (
	"time"
)

// Version is the version of this package's JSON.
const Version = 1

// ReportsPath is where the agent posts a Batch.
const ReportsPath = "/v1/reports"

// Kind says which payload a Record carries.
type Kind string

// The kinds of record.
const (
	KindHeartbeat Kind = "heartbeat"
	KindEvent     Kind = "event"
)

// Batch is the body of POST /v1/reports: some of one agent's records, oldest
// first, with strictly increasing sequence numbers.
type Batch struct {
	// Agent is the agent's id (the VM id, else the machine id). The endpoint
	// checks it against the identity in the bearer token.
	Agent   string   `json:"agent"`
	Records []Record `json:"records"`
}

// Record is one numbered report. Exactly one of Heartbeat and Event is set,
// the one Kind names.
type Record struct {
	// Seq is the record's number, unique per agent and increasing in the
	// order the agent wrote the records. Numbers may be missing (the outbox
	// drops old heartbeats when it is full) but are never reused.
	Seq       uint64     `json:"seq"`
	Kind      Kind       `json:"kind"`
	Time      time.Time  `json:"time"`
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	Event     *Event     `json:"event,omitempty"`
}

// Heartbeat is the host's full state, sent every control.reportInterval.
type Heartbeat struct {
	// State is Healthy, Degraded, Unhealthy or Initializing.
	State  string  `json:"state"`
	Checks []Check `json:"checks"`
	Engine Engine  `json:"engine"`
	// Cache holds the image cache's figures by name (hits, misses, bytes
	// per tier, …).
	Cache        map[string]float64 `json:"cache,omitempty"`
	AgentVersion string             `json:"agentVersion"`
	Labels       map[string]string  `json:"labels,omitempty"`
	OSBuild      string             `json:"osBuild,omitempty"`
	// IntervalSeconds is the agent's control.reportInterval: the endpoint
	// marks the host Stale when no report came for three of them.
	IntervalSeconds int64 `json:"intervalSeconds"`
	// Dropped is what the agent's outbox has dropped since it was created,
	// in total (a state, not a delta, so a repeated heartbeat says the same).
	Dropped Dropped `json:"dropped,omitzero"`
	// OS and Arch are the host's platform as Go names it (linux, windows;
	// amd64, arm64): a rollout's version must be signed for them.
	OS   string `json:"os,omitempty"`
	Arch string `json:"arch,omitempty"`
	// Rejected are the versions this host was told to run and gave up on,
	// newest first, at most MaxRejected.
	Rejected []Rejected `json:"rejected,omitempty"`
}

// Check is the result of one health check.
type Check struct {
	Name string `json:"name"`
	// Status is ok, warn or fail.
	Status  string    `json:"status"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// Engine is the container engine as the agent sees it.
type Engine struct {
	Flavor  string `json:"flavor"` // docker or containerd
	Version string `json:"version"`
	Active  bool   `json:"active"`
	Healthy bool   `json:"healthy"`
}

// Dropped counts the records the agent's outbox dropped because it was full.
type Dropped struct {
	Heartbeats uint64 `json:"heartbeats"`
	Events     uint64 `json:"events"`
}

// Event is one state change: engine installed, upgrade started, cache tier
// down, …
type Event struct {
	// Kind names the change, for example "engine.upgrade.succeeded".
	Kind    string            `json:"kind"`
	Message string            `json:"message,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// Ack is the endpoint's answer to a Batch it accepted.
type Ack struct {
	Agent string `json:"agent"`
	// UpTo is the highest sequence number the endpoint has stored for the
	// agent. Every record of the agent with Seq <= UpTo is stored (by this
	// batch or an earlier one), so the agent may delete it.
	UpTo uint64 `json:"upTo"`
	// Stored counts the batch's records stored now; Duplicates those that
	// were already stored.
	Stored     int `json:"stored"`
	Duplicates int `json:"duplicates"`
}

// Error is the one shape of every error the endpoint returns, with a 4xx or
// 5xx status.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// The codes of Error.
const (
	CodeBadRequest       = "bad_request"        // 400: malformed or invalid body
	CodeUnauthorized     = "unauthorized"       // 401: no, bad or expired token
	CodeForbidden        = "forbidden"          // 403: valid token, not allowed
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeTimeout          = "timeout"            // 408: the body came too slowly
	CodeConflict         = "conflict"           // 409: numbering went back
	CodeTooLarge         = "too_large"          // 413: body over the limit
	CodeUnsupported      = "unsupported"        // 415: content type or encoding
	CodeRateLimited      = "rate_limited"       // 429
	CodeInternal         = "internal"           // 500
	CodeUnavailable      = "unavailable"        // 503
)

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return e.Code + ": " + e.Message
}

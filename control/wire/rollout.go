package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/clip"
)

// Desired state and rollouts: what a host should run, and the operator's
// plan for moving a selection of hosts to a version in waves.
//
//	GET  /v1/agents/{id}/desired          Desired, with an ETag; long poll with
//	                                      If-None-Match and ?wait=60s (≤ MaxWait)
//	POST /v1/rollouts                     RolloutSpec → 201 Rollout
//	GET  /v1/rollouts, /v1/rollouts/{id}  RolloutList, Rollout
//	POST /v1/rollouts/{id}/pause|resume|abort   {"reason": "…"} (optional) → Rollout
//	PUT|DELETE /v1/hosts/{id}/pin         Pin → Pin (DELETE ?kind=engine|agent, else both)

// RolloutsPath is the collection of rollouts.
const RolloutsPath = "/v1/rollouts"

// DesiredPath is where the agent with id reads its desired state.
func DesiredPath(id string) string { return "/v1/agents/" + id + "/desired" }

// Long poll bounds of GET /v1/agents/{id}/desired?wait=.
const (
	DefaultWait = 60 * time.Second
	MaxWait     = 5 * time.Minute
)

// The kinds a rollout or a pin moves.
const (
	KindEngine = "engine"
	KindAgent  = "agent"
)

// Desired is what one host should run. An absent member means "no
// opinion": the host keeps what its own config says.
type Desired struct {
	Engine *DesiredEngine `json:"engine,omitempty"`
	Agent  *DesiredAgent  `json:"agent,omitempty"`
	// Rollouts are the ids of the rollouts that decided this answer.
	Rollouts []string `json:"rollouts"`
}

// DesiredEngine is the engine a host should run.
type DesiredEngine struct {
	Flavor  string `json:"flavor"`
	Version string `json:"version"`
}

// DesiredAgent is the agent version a host should run.
type DesiredAgent struct {
	Version string `json:"version"`
}

// Rejected is a version a host was told to run and gave up on: the engine
// version failed its health gate and was rolled back, the agent version was
// blacklisted by the launcher, or the version is not in the host's verified
// release metadata. Heartbeats carry the host's current list; a rollout
// counts the host as failed when its target is in it.
type Rejected struct {
	Kind    string `json:"kind"` // engine or agent
	Version string `json:"version"`
	// Reason is "rolled-back", "blacklisted" or "not-signed".
	Reason  string    `json:"reason"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// The reasons of Rejected.
const (
	RejectedRolledBack  = "rolled-back"
	RejectedBlacklisted = "blacklisted"
	RejectedNotSigned   = "not-signed"
)

// MaxRejected bounds Heartbeat.Rejected.
const MaxRejected = 16

// Pin fixes one host's version of a kind, whatever the rollouts say. PUT
// /v1/hosts/{id}/pin sets the members given and keeps the other; the
// answer is the host's pins after the change.
type Pin struct {
	Engine string `json:"engine,omitempty"`
	Agent  string `json:"agent,omitempty"`
}

// The states of a rollout.
const (
	RolloutRunning    = "running"
	RolloutPaused     = "paused"
	RolloutHalted     = "halted"
	RolloutCompleted  = "completed"
	RolloutAborted    = "aborted"
	RolloutRolledBack = "rolled-back"
)

// The states of a host in a rollout.
const (
	HostPending    = "pending"     // its wave has not started
	HostTold       = "told"        // its desired state names the target
	HostUpdated    = "updated"     // it reports the target, not yet Healthy for the bake time
	HostHealthy    = "healthy"     // it reported the target Healthy for the bake time
	HostFailed     = "failed"      // rejected the target, Unhealthy on it, or silent for 3 intervals
	HostRolledBack = "rolled-back" // told to go back to what it ran before
)

// HostStates lists the host states in the order a host moves through them.
var HostStates = []string{HostPending, HostTold, HostUpdated, HostHealthy, HostFailed, HostRolledBack}

// DefaultWaves are a rollout's waves when its spec gives none.
var DefaultWaves = []float64{1, 10, 50, 100}

// Bounds of a RolloutSpec.
const (
	MinBake         = time.Second
	MaxBake         = 24 * time.Hour
	DefaultBake     = 10 * time.Minute
	MaxWaves        = 20
	MaxSelector     = 16
	MaxSpecBytes    = 64 << 10
	MaxVersionLen   = 64
	MaxReasonLen    = 1024
	MaxRolloutHosts = 1 << 20
)

// Duration is a time.Duration written as a Go duration string ("10m").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"10m\" or \"1h30m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"10m\" or \"1h30m\"", clip.String(s, quoteLen))
	}
	*d = Duration(v)
	return nil
}

// RolloutSpec is what an operator asks for in POST /v1/rollouts.
type RolloutSpec struct {
	// Selector picks the hosts whose labels all match (at least one pair).
	Selector map[string]string `json:"selector"`
	Kind     string            `json:"kind"`
	// Flavor is the engine flavor (kind engine only; required there).
	Flavor  string `json:"flavor,omitempty"`
	Version string `json:"version"`
	// Waves are cumulative percentages, strictly increasing, the last 100.
	Waves []float64 `json:"waves,omitempty"`
	Bake  Duration  `json:"bake,omitempty"`
	// MaxFailures and MaxFailurePercent: the rollout halts when failed hosts
	// are more than MaxFailures, or more than MaxFailurePercent of the hosts
	// told so far. With neither set, the first failure halts it; with one
	// set, only that one applies.
	MaxFailures       *int     `json:"maxFailures,omitempty"`
	MaxFailurePercent *float64 `json:"maxFailurePercent,omitempty"`
	RollbackOnHalt    bool     `json:"rollbackOnHalt,omitempty"`
}

// ErrInvalidSpec: a RolloutSpec the endpoint refuses (400).
var ErrInvalidSpec = errors.New("invalid rollout spec")

// DecodeRolloutSpec reads one RolloutSpec of at most MaxSpecBytes, strictly
// (unknown fields, wrong types and trailing data are refused), fills the
// defaults (waves, bake) and validates it.
func DecodeRolloutSpec(r io.Reader) (RolloutSpec, error) {
	lr := &io.LimitedReader{R: r, N: MaxSpecBytes + 1}
	data, err := io.ReadAll(lr)
	if err != nil {
		return RolloutSpec{}, fmt.Errorf("%w: reading the body: %v", ErrInvalidSpec, err)
	}
	if len(data) > MaxSpecBytes {
		return RolloutSpec{}, fmt.Errorf("%w: body over %d bytes", ErrInvalidSpec, MaxSpecBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s RolloutSpec
	if err := dec.Decode(&s); err != nil {
		return RolloutSpec{}, fmt.Errorf("%w: %s", ErrInvalidSpec, describeSpec(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return RolloutSpec{}, fmt.Errorf("%w: data after the rollout object", ErrInvalidSpec)
	}
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return RolloutSpec{}, err
	}
	return s, nil
}

func describeSpec(err error) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field == "" {
			return fmt.Sprintf("JSON %s where a rollout object is expected", typ.Value)
		}
		return fmt.Sprintf("%s: JSON %s where %s expected", typ.Field, typ.Value, typ.Type)
	}
	return describe(err)
}

// WithDefaults fills the waves and the bake time when they are absent.
func (s RolloutSpec) WithDefaults() RolloutSpec {
	if len(s.Waves) == 0 {
		s.Waves = slices.Clone(DefaultWaves)
	}
	if s.Bake == 0 {
		s.Bake = Duration(DefaultBake)
	}
	return s
}

// Validate checks a spec (defaults filled) against the rules above. Errors
// wrap ErrInvalidSpec and name the field and what is allowed. Whether the
// version is signed and whether the selector matches any host are the
// server's checks.
func (s RolloutSpec) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
	}
	if len(s.Selector) == 0 {
		return bad("selector", "empty; name at least one label, for example {\"pool\": \"web\"}")
	}
	if len(s.Selector) > MaxSelector {
		return bad("selector", "%d labels, over the limit of %d", len(s.Selector), MaxSelector)
	}
	for k, v := range s.Selector {
		if err := checkKey("selector", k); err != nil {
			return asSpecError(err)
		}
		if v == "" {
			return bad("selector["+k+"]", "empty value")
		}
		if err := checkLen("selector["+k+"]", v, MaxShortLen); err != nil {
			return asSpecError(err)
		}
	}
	switch s.Kind {
	case KindEngine:
		if s.Flavor == "" {
			return bad("flavor", "missing; an engine rollout names its flavor (docker or containerd)")
		}
		if p := idProblem(s.Flavor); p != "" {
			return bad("flavor", "%s", p)
		}
	case KindAgent:
		if s.Flavor != "" {
			return bad("flavor", "%q given for an agent rollout; only engine rollouts have a flavor", clip.String(s.Flavor, quoteLen))
		}
	case "":
		return bad("kind", "missing; want engine or agent")
	default:
		return bad("kind", "%q is not engine or agent", clip.String(s.Kind, quoteLen))
	}
	if err := CheckVersion(s.Version); err != nil {
		return bad("version", "%v", err)
	}
	if err := checkWaves(s.Waves); err != nil {
		return bad("waves", "%v", err)
	}
	if b := time.Duration(s.Bake); b < MinBake || b > MaxBake {
		return bad("bake", "%s is outside %s to %s", b, MinBake, "24h")
	}
	if s.MaxFailures != nil && (*s.MaxFailures < 0 || *s.MaxFailures > MaxRolloutHosts) {
		return bad("maxFailures", "%d is outside 0..%d", *s.MaxFailures, MaxRolloutHosts)
	}
	if p := s.MaxFailurePercent; p != nil && (math.IsNaN(*p) || *p < 0 || *p > 100) {
		return bad("maxFailurePercent", "%v is outside 0..100", *p)
	}
	return nil
}

// asSpecError turns a batch field's ErrInvalid into the spec's
// ErrInvalidSpec, keeping what it says of the field.
func asSpecError(err error) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
}

func checkWaves(w []float64) error {
	if len(w) > MaxWaves {
		return fmt.Errorf("%d waves, over the limit of %d", len(w), MaxWaves)
	}
	prev := 0.0
	for i, p := range w {
		switch {
		case math.IsNaN(p) || p <= 0:
			return fmt.Errorf("wave %d is %v; a wave is a percentage above 0", i+1, p)
		case p > 100:
			return fmt.Errorf("wave %d is %v, over 100", i+1, p)
		case p <= prev:
			return fmt.Errorf("wave %d is %v, not above wave %d's %v; waves are cumulative percentages, strictly increasing", i+1, p, i, prev)
		}
		prev = p
	}
	if prev != 100 {
		return fmt.Errorf("the last wave is %v; it must be 100 so that every selected host is reached", prev)
	}
	return nil
}

// CheckVersion accepts 1 to MaxVersionLen of [A-Za-z0-9.+_~-], starting
// with a letter or digit: the versions a rollout or a pin may name.
func CheckVersion(v string) error {
	if v == "" {
		return errors.New("missing")
	}
	if len(v) > MaxVersionLen {
		return fmt.Errorf("%d bytes, over the limit of %d", len(v), MaxVersionLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '+' && c != '_' && c != '~' && c != '-') {
			return fmt.Errorf("%q has %q at byte %d; a version is letters, digits and . + _ ~ - (not first)", clip.String(v, quoteLen), rune(c), i)
		}
	}
	return nil
}

// Rollout is a rollout as GET /v1/rollouts/{id} shows it.
type Rollout struct {
	ID string `json:"id"`
	RolloutSpec
	State     string    `json:"state"`
	CreatedBy string    `json:"createdBy"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	// Wave is the index in Waves of the wave in progress (the last one
	// once completed).
	Wave int `json:"wave"`
	// Hosts is how many hosts the rollout holds; ByState counts them by
	// host state (every state of HostStates present, 0 or more).
	Hosts   int            `json:"hosts"`
	ByState map[string]int `json:"byState"`
	// WaveStatus is one entry per wave, in order.
	WaveStatus []WaveStatus `json:"waveStatus"`
	// History is every decision, oldest first.
	History []Decision `json:"history"`
	// Versions is how many of the rollout's hosts reported each version of
	// its kind over time, oldest first: a sample whenever the counts
	// changed, at most one a MinSampleGap.
	Versions []VersionSample `json:"versions,omitempty"`
}

// MinSampleGap is the least time between two VersionSamples of a rollout.
const MinSampleGap = 5 * time.Second

// VersionSample counts a rollout's hosts by the version of its kind they
// reported at Time ("" for hosts that reported none).
type VersionSample struct {
	Time   time.Time      `json:"time"`
	Counts map[string]int `json:"counts"`
}

// WaveStatus is one wave of a rollout.
type WaveStatus struct {
	Percent float64 `json:"percent"`
	// Hosts is how many hosts this wave adds (not cumulative).
	Hosts   int            `json:"hosts"`
	ByState map[string]int `json:"byState"`
	Started *time.Time     `json:"started,omitempty"`
	Done    *time.Time     `json:"done,omitempty"`
}

// Decision is one change of a rollout's state, with who made it and why.
type Decision struct {
	Seq    int       `json:"seq"`
	Time   time.Time `json:"time"`
	Who    string    `json:"who"` // an operator's name, or "controller"
	Action string    `json:"action"`
	// Wave is the wave the decision concerns (-1 for none).
	Wave   int    `json:"wave"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Reason string `json:"reason"`
}

// The actions of Decision.
const (
	ActionCreate   = "create"
	ActionStart    = "start-wave" // a wave's hosts are told
	ActionAdvance  = "advance"    // a wave baked; the next starts
	ActionComplete = "complete"   // the last wave baked
	ActionHalt     = "halt"       // failures passed the threshold
	ActionRollback = "rollback"   // touched hosts told to go back
	ActionPause    = "pause"
	ActionResume   = "resume"
	ActionAbort    = "abort"
)

// RolloutList is the answer of GET /v1/rollouts, newest first.
type RolloutList struct {
	Rollouts []Rollout `json:"rollouts"`
}

// RolloutAction is the optional body of pause, resume and abort.
type RolloutAction struct {
	Reason string `json:"reason,omitempty"`
}

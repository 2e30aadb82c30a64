package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"

	"github.com/berthhq/berth/internal/clip"
)

// Limits of a valid Batch. They bound what one request can make the endpoint
// hold and store; the agent's outbox checks a record against them before it
// writes it, so it never keeps a record the endpoint would refuse.
const (
	MaxBatchBytes      = 4 << 20 // default body limit of DecodeBatch
	MaxRecords         = 1000    // records per batch
	MaxIDLen           = 128     // agent id, names, keys, kinds
	MaxShortLen        = 256     // versions, label values, OS build
	MaxMessageLen      = 4096    // check and event messages
	MaxFieldValueLen   = 1024    // event field values
	MaxChecks          = 64      // checks per heartbeat
	MaxLabels          = 64      // labels per heartbeat
	MaxCacheFigures    = 128     // cache figures per heartbeat
	MaxEventFields     = 32      // fields per event
	MaxClockSkewAhead  = 7 * 24 * time.Hour
	MaxIntervalSeconds = 86400 // a day between heartbeats at most
)

// MinTime is the earliest time a record may carry: anything before is a
// clock that was never set.
var MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxSeq is the highest sequence number a record received at now may
// carry. An agent's outbox takes its first number from its clock, in
// microseconds since 1970, and adds one per record, far fewer than one a
// microsecond; a clock more than MaxClockSkewAhead ahead has its records
// refused as from the future. So no agent's numbering reaches past now +
// MaxClockSkewAhead in microseconds, and a number above it (2^63-1, say)
// could only wedge the host: every honest number after it would be below.
func MaxSeq(now time.Time) uint64 {
	return uint64(max(now.Add(MaxClockSkewAhead).UnixMicro(), 0))
}

// Errors of DecodeBatch, checked with errors.Is: ErrTooLarge is a 413,
// ErrInvalid a 400.
var (
	ErrTooLarge = errors.New("batch too large")
	ErrInvalid  = errors.New("invalid batch")
)

// DecodeBatch reads one Batch of at most maxBytes (MaxBatchBytes when
// maxBytes <= 0) from r and validates it against the current time. It is
// strict: unknown fields, wrong types, trailing data and anything over the
// limits are refused, with an error that names the record and field.
//
// encoding/json matches field names case-insensitively and keeps the last
// of duplicate keys; both are accepted here.
func DecodeBatch(r io.Reader, maxBytes int64) (Batch, error) {
	if maxBytes <= 0 {
		maxBytes = MaxBatchBytes
	}
	lr := &io.LimitedReader{R: r, N: maxBytes + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	var b Batch
	if err := dec.Decode(&b); err != nil {
		if lr.N <= 0 {
			return Batch{}, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, maxBytes)
		}
		return Batch{}, fmt.Errorf("%w: %s", ErrInvalid, describe(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if lr.N <= 0 {
			return Batch{}, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, maxBytes)
		}
		return Batch{}, fmt.Errorf("%w: data after the batch object", ErrInvalid)
	}
	if lr.N <= 0 {
		return Batch{}, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, maxBytes)
	}
	if err := b.Validate(time.Now()); err != nil {
		return Batch{}, err
	}
	return b, nil
}

func describe(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "batch"
		}
		return fmt.Sprintf("%s: JSON %s where %s expected", field, typ.Value, typ.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "JSON ends early"
	}
	return err.Error()
}

// Validate checks a batch against the limits and rules of this version;
// now bounds how far ahead of the receiver's clock a record's time may be.
// Errors wrap ErrInvalid and name the field, for example
// "records[3].seq: 5 is not above the previous record's 7".
func (b Batch) Validate(now time.Time) error {
	if err := checkID("agent", b.Agent); err != nil {
		return err
	}
	if len(b.Records) == 0 {
		return invalid("records", "no records")
	}
	if len(b.Records) > MaxRecords {
		return invalid("records", "%d records, over the limit of %d", len(b.Records), MaxRecords)
	}
	var prev uint64
	for i, r := range b.Records {
		p := fmt.Sprintf("records[%d]", i)
		if err := r.validate(p, now); err != nil {
			return err
		}
		if i > 0 && r.Seq <= prev {
			if r.Seq == prev {
				return invalid(p+".seq", "%d repeats the previous record's", r.Seq)
			}
			return invalid(p+".seq", "%d is not above the previous record's %d", r.Seq, prev)
		}
		prev = r.Seq
	}
	return nil
}

// Validate checks one record against the rules of this version.
func (r Record) Validate(now time.Time) error { return r.validate("record", now) }

func (r Record) validate(p string, now time.Time) error {
	if r.Seq == 0 {
		return invalid(p+".seq", "missing or 0; numbers start at 1")
	}
	if top := MaxSeq(now); r.Seq > top {
		return invalid(p+".seq", "%d is above %d, the most an agent's clock-seeded numbering can reach by now (microseconds since 1970, %s ahead at most)", r.Seq, top, MaxClockSkewAhead)
	}
	if err := checkTime(p+".time", r.Time, now, false); err != nil {
		return err
	}
	switch r.Kind {
	case KindHeartbeat:
		if r.Heartbeat == nil {
			return invalid(p+".heartbeat", "missing for kind %q", r.Kind)
		}
		if r.Event != nil {
			return invalid(p+".event", "set on a record of kind %q", r.Kind)
		}
		return r.Heartbeat.validate(p+".heartbeat", now)
	case KindEvent:
		if r.Event == nil {
			return invalid(p+".event", "missing for kind %q", r.Kind)
		}
		if r.Heartbeat != nil {
			return invalid(p+".heartbeat", "set on a record of kind %q", r.Kind)
		}
		return r.Event.validate(p + ".event")
	case "":
		return invalid(p+".kind", "missing")
	default:
		return invalid(p+".kind", "unknown kind %q (want heartbeat or event)", clip.String(string(r.Kind), quoteLen))
	}
}

func (h *Heartbeat) validate(p string, now time.Time) error {
	switch h.State {
	case "Healthy", "Degraded", "Unhealthy", "Initializing":
	default:
		return invalid(p+".state", "unknown state %q (want Healthy, Degraded, Unhealthy or Initializing)", clip.String(h.State, quoteLen))
	}
	if len(h.Checks) > MaxChecks {
		return invalid(p+".checks", "%d checks, over the limit of %d", len(h.Checks), MaxChecks)
	}
	for i, c := range h.Checks {
		cp := fmt.Sprintf("%s.checks[%d]", p, i)
		if err := checkID(cp+".name", c.Name); err != nil {
			return err
		}
		switch c.Status {
		case "ok", "warn", "fail":
		default:
			return invalid(cp+".status", "unknown status %q (want ok, warn or fail)", clip.String(c.Status, quoteLen))
		}
		if err := checkLen(cp+".message", c.Message, MaxMessageLen); err != nil {
			return err
		}
		if err := checkTime(cp+".time", c.Time, now, true); err != nil {
			return err
		}
	}
	if err := checkLen(p+".engine.flavor", h.Engine.Flavor, MaxIDLen); err != nil {
		return err
	}
	if err := checkLen(p+".engine.version", h.Engine.Version, MaxShortLen); err != nil {
		return err
	}
	if len(h.Cache) > MaxCacheFigures {
		return invalid(p+".cache", "%d figures, over the limit of %d", len(h.Cache), MaxCacheFigures)
	}
	for k, v := range h.Cache {
		if err := checkKey(p+".cache", k); err != nil {
			return err
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return invalid(p+".cache["+k+"]", "not a finite number")
		}
	}
	if err := checkLen(p+".agentVersion", h.AgentVersion, MaxShortLen); err != nil {
		return err
	}
	if len(h.Labels) > MaxLabels {
		return invalid(p+".labels", "%d labels, over the limit of %d", len(h.Labels), MaxLabels)
	}
	for k, v := range h.Labels {
		if err := checkKey(p+".labels", k); err != nil {
			return err
		}
		if err := checkLen(p+".labels["+k+"]", v, MaxShortLen); err != nil {
			return err
		}
	}
	if h.IntervalSeconds < 0 || h.IntervalSeconds > MaxIntervalSeconds {
		return invalid(p+".intervalSeconds", "%d is outside 0..%d", h.IntervalSeconds, MaxIntervalSeconds)
	}
	if err := checkLen(p+".os", h.OS, MaxIDLen); err != nil {
		return err
	}
	if err := checkLen(p+".arch", h.Arch, MaxIDLen); err != nil {
		return err
	}
	if err := checkRejected(p+".rejected", h.Rejected, now); err != nil {
		return err
	}
	return checkLen(p+".osBuild", h.OSBuild, MaxShortLen)
}

func checkRejected(p string, rs []Rejected, now time.Time) error {
	if len(rs) > MaxRejected {
		return invalid(p, "%d versions, over the limit of %d", len(rs), MaxRejected)
	}
	for i, r := range rs {
		rp := fmt.Sprintf("%s[%d]", p, i)
		if r.Kind != KindEngine && r.Kind != KindAgent {
			return invalid(rp+".kind", "%q is not engine or agent", clip.String(r.Kind, quoteLen))
		}
		if err := CheckVersion(r.Version); err != nil {
			return invalid(rp+".version", "%v", err)
		}
		switch r.Reason {
		case RejectedRolledBack, RejectedBlacklisted, RejectedNotSigned:
		default:
			return invalid(rp+".reason", "%q is not rolled-back, blacklisted or not-signed", clip.String(r.Reason, quoteLen))
		}
		if err := checkLen(rp+".message", r.Message, MaxMessageLen); err != nil {
			return err
		}
		if err := checkTime(rp+".time", r.Time, now, true); err != nil {
			return err
		}
	}
	return nil
}

func (e *Event) validate(p string) error {
	if err := checkID(p+".kind", e.Kind); err != nil {
		return err
	}
	if err := checkLen(p+".message", e.Message, MaxMessageLen); err != nil {
		return err
	}
	if len(e.Fields) > MaxEventFields {
		return invalid(p+".fields", "%d fields, over the limit of %d", len(e.Fields), MaxEventFields)
	}
	for k, v := range e.Fields {
		if err := checkKey(p+".fields", k); err != nil {
			return err
		}
		if err := checkLen(p+".fields["+k+"]", v, MaxFieldValueLen); err != nil {
			return err
		}
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// CheckAgentID checks an agent id as Batch.Validate does, so that
// berth-control token issue --agent refuses an id no report could carry.
func CheckAgentID(id string) error {
	if p := idProblem(id); p != "" {
		return fmt.Errorf("agent id %s", p)
	}
	return nil
}

// checkID accepts 1 to MaxIDLen of [A-Za-z0-9._-], starting with a letter
// or digit: agent ids, check names, event kinds.
func checkID(field, s string) error {
	if p := idProblem(s); p != "" {
		return invalid(field, "%s", p)
	}
	return nil
}

// idProblem says what makes s no id, or "".
func idProblem(s string) string {
	if s == "" {
		return "missing"
	}
	if len(s) > MaxIDLen {
		return fmt.Sprintf("%d bytes, over the limit of %d", len(s), MaxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Sprintf("%q has %q at byte %d; allowed are letters, digits and . _ - (not first)", clip.String(s, quoteLen), rune(c), i)
		}
	}
	return ""
}

// checkKey is checkID that also allows '/' after the first byte, for label
// keys such as "berth.io/pool".
func checkKey(field, k string) error {
	if k == "" {
		return invalid(field, "empty key")
	}
	if len(k) > MaxIDLen {
		return invalid(field, "key of %d bytes, over the limit of %d", len(k), MaxIDLen)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-' && c != '/') {
			return invalid(field, "key %q has %q at byte %d; allowed are letters, digits and . _ - / (not first)", clip.String(k, quoteLen), rune(c), i)
		}
	}
	return nil
}

func checkLen(field, s string, limit int) error {
	if len(s) > limit {
		return invalid(field, "%d bytes, over the limit of %d", len(s), limit)
	}
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	return nil
}

func checkTime(field string, t, now time.Time, zeroOK bool) error {
	if t.IsZero() {
		if zeroOK {
			return nil
		}
		return invalid(field, "missing")
	}
	if t.Before(MinTime) {
		return invalid(field, "%s is before %s: the clock is not set", t.Format(time.RFC3339), MinTime.Format("2006"))
	}
	if t.After(now.Add(MaxClockSkewAhead)) {
		return invalid(field, "%s is more than %s ahead of the receiver's clock", t.Format(time.RFC3339), MaxClockSkewAhead)
	}
	return nil
}

// quoteLen is how much of a hostile value an error message quotes.
const quoteLen = 64

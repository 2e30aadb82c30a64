package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/berthhq/berth/imagecache/cas"
)

// sentinel is an error class with its own message that may belong to a
// broader class of package cas.
type sentinel struct {
	msg  string
	base error
}

// Error returns the class's message.
func (s *sentinel) Error() string { return s.msg }

// Unwrap returns the broader class, if any.
func (s *sentinel) Unwrap() error { return s.base }

// Error classes the client returns, for errors.Is. Every error from a
// request wraps exactly one of them, or cas.ErrDigestMismatch, or the
// context's error.
var (
	// ErrNotFound: the registry does not hold the repository, manifest or
	// blob. It wraps cas.ErrNotFound.
	ErrNotFound error = &sentinel{"not found upstream", cas.ErrNotFound}
	// ErrUnauthorized: the registry wants credentials it did not get or
	// did not accept.
	ErrUnauthorized error = &sentinel{"upstream authentication failed", nil}
	// ErrDenied: the credentials were accepted but do not allow the
	// request.
	ErrDenied error = &sentinel{"upstream denied access", nil}
	// ErrUpstreamUnavailable: the registry cannot be reached, answered
	// 429 or 5xx, or broke the protocol. It wraps cas.ErrUnavailable.
	ErrUpstreamUnavailable error = &sentinel{"upstream unavailable", cas.ErrUnavailable}
	// ErrInvalid: a repository name, reference or range the registry (or
	// this client, before asking) rejects as malformed.
	ErrInvalid error = &sentinel{"invalid upstream request", nil}
	// ErrTooLarge: a manifest or token response is larger than the client
	// accepts.
	ErrTooLarge error = &sentinel{"upstream response too large", nil}
)

// ErrorDetail is one entry of a registry's error body,
// {"errors":[{"code":…,"message":…,"detail":…}]}. Code and Message are
// cleaned of control characters and bounded in length: they come from the
// network.
type ErrorDetail struct {
	// Code is the spec's error code, e.g. MANIFEST_UNKNOWN.
	Code string `json:"code"`
	// Message is the registry's words.
	Message string `json:"message,omitempty"`
	// Detail is the entry's detail, JSON as sent (at most 4 KiB).
	Detail json.RawMessage `json:"detail,omitempty"`
}

// RegistryError is a non-success answer from the registry. It unwraps to
// one of the package's error classes; errors.As gives the status and the
// registry's error codes (the cache passes them on to its own clients).
type RegistryError struct {
	// Status is the HTTP status the registry answered with.
	Status int
	// Errors are the parsed entries of the error body, if it had any.
	Errors []ErrorDetail
	kind   error
}

// Error describes the answer in one line.
func (e *RegistryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: registry answered %d %s", e.kind, e.Status, http.StatusText(e.Status))
	for i, d := range e.Errors {
		if i == 3 {
			fmt.Fprintf(&b, " (and %d more)", len(e.Errors)-i)
			break
		}
		b.WriteString("; ")
		b.WriteString(d.Code)
		if d.Message != "" {
			b.WriteString(": ")
			b.WriteString(d.Message)
		}
	}
	return b.String()
}

// Unwrap returns the error class.
func (e *RegistryError) Unwrap() error { return e.kind }

// Limits on what an error body may contribute.
const (
	maxErrorBody    = 64 << 10
	maxErrorEntries = 16
	maxErrorCode    = 64
	maxErrorMessage = 512
	maxErrorDetail  = 4 << 10
)

// parseErrorBody reads the distribution-spec error body. Anything that is
// not such a body gives no entries; it never fails.
func parseErrorBody(body []byte) []ErrorDetail {
	if len(body) > maxErrorBody {
		return nil
	}
	var doc struct {
		Errors []struct {
			Code    any             `json:"code"`
			Message any             `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil
	}
	var out []ErrorDetail
	for _, e := range doc.Errors {
		if len(out) == maxErrorEntries {
			break
		}
		code, _ := e.Code.(string)
		msg, _ := e.Message.(string)
		d := ErrorDetail{Code: cleanCode(code), Message: cleanText(msg, maxErrorMessage)}
		if len(e.Detail) > 0 && len(e.Detail) <= maxErrorDetail && json.Valid(e.Detail) && string(e.Detail) != "null" {
			d.Detail = append(json.RawMessage(nil), e.Detail...)
		}
		if d.Code == "" && d.Message == "" {
			continue
		}
		out = append(out, d)
	}
	return out
}

// cleanCode keeps an error code to the spec's alphabet (upper-case
// letters, digits and underscores); anything else becomes "UNKNOWN".
func cleanCode(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ToUpper(s)
	if len(s) > maxErrorCode {
		return "UNKNOWN"
	}
	for _, r := range s {
		if !('A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_') {
			return "UNKNOWN"
		}
	}
	return s
}

// cleanText drops control and non-printable characters and bounds s to
// max bytes (at a rune boundary), so that a registry's words cannot forge
// log lines or flood them.
func cleanText(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' || r == '\u2028' || r == '\u2029' {
			r = ' '
		}
		if b.Len()+len(string(r)) > max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// classify maps a status and the registry's error codes to an error class.
// The status decides where it is unambiguous; the codes decide the rest.
func classify(status int, details []ErrorDetail) error {
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusForbidden:
		return ErrDenied
	case status == http.StatusTooManyRequests, status >= 500:
		return ErrUpstreamUnavailable
	case status == http.StatusRequestedRangeNotSatisfiable:
		return ErrInvalid
	}
	for _, d := range details {
		switch d.Code {
		case "BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "MANIFEST_BLOB_UNKNOWN":
			return ErrNotFound
		case "UNAUTHORIZED":
			return ErrUnauthorized
		case "DENIED":
			return ErrDenied
		case "TOOMANYREQUESTS", "UNAVAILABLE":
			return ErrUpstreamUnavailable
		case "NAME_INVALID", "DIGEST_INVALID", "TAG_INVALID", "MANIFEST_INVALID", "SIZE_INVALID",
			"RANGE_INVALID", "UNSUPPORTED", "PAGINATION_NUMBER_INVALID":
			return ErrInvalid
		}
	}
	if status == http.StatusBadRequest {
		return ErrInvalid
	}
	return ErrUpstreamUnavailable
}

// transportError wraps a failure to get an answer at all: the context's
// error when it ended, ErrUpstreamUnavailable otherwise.
func transportError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	return fmt.Errorf("%w: %s: %w", ErrUpstreamUnavailable, what, err)
}

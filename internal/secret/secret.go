// Package secret holds Value, the one type Berth keeps credentials in (an
// account key, a SAS token, a registry password, a bearer token), so that
// no print, log line or encoding of a struct that carries one can show it.
// It is a leaf: anything may import it.
package secret

import (
	"fmt"
	"log/slog"
)

// Redacted is what a Value shows as, whatever prints it.
const Redacted = "REDACTED"

// Value is a credential. fmt (every verb, %#v included), log/slog and text
// encoders (JSON, YAML) see Redacted; Reveal gives the value to the one
// place that sends it.
type Value string

// String implements fmt.Stringer.
func (Value) String() string { return Redacted }

// GoString implements fmt.GoStringer, for %#v.
func (Value) GoString() string { return Redacted }

// Format implements fmt.Formatter: every verb (%x and %q too, which would
// otherwise bypass String for a string type) writes Redacted.
func (Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalText implements encoding.TextMarshaler, so encoders write
// Redacted too.
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Reveal returns the secret itself.
func (v Value) Reveal() string { return string(v) }

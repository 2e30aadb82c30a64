// Package units holds the two value types agent.yaml writes as text and
// several subsystems' config blocks share: Duration ("90s") and Size
// ("50GiB"). It is a leaf, so that each subsystem can own its block's type
// without importing the agent's config package.
package units

import (
	"strconv"
	"strings"
	"time"
)

// ValueError says why a text is not a Duration or a Size. The config
// loader renders Value its own way (quoted, cut, non-ASCII spelled out);
// Error quotes it plainly.
type ValueError struct {
	// Value is the text that was refused.
	Value string
	// Problem completes the sentence "Value ...": what is wrong and what to write.
	Problem string
}

// Error writes "VALUE" PROBLEM.
func (e *ValueError) Error() string { return strconv.Quote(e.Value) + " " + e.Problem }

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes the Go duration string without zero tails: "1m", not "1m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// MarshalText writes the Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string; negative durations are
// refused. Its errors are *ValueError.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return &ValueError{string(b), "is not a duration; write a Go duration such as 90s, 5m or 1h30m"}
	}
	if v < 0 {
		return &ValueError{string(b), "is negative; a duration must be zero or more"}
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count written like "50GiB" or "512MB".
type Size int64

// Binary size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so that "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize reads a size such as "50GiB", "1.5GB" or "1024B". Its errors
// are *ValueError.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || f < 0 || f != f {
			break
		}
		v := f * float64(u.mult)
		if v >= 1<<62 {
			return 0, &ValueError{s, "is too large"}
		}
		return Size(v), nil
	}
	return 0, &ValueError{s, "is not a size; write a number and a unit such as 512MiB, 50GiB or 2TB"}
}

// String formats the size with the largest binary unit that divides it.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   Size
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}} {
		if s != 0 && s%u.mult == 0 {
			return strconv.FormatInt(int64(s/u.mult), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MarshalText writes the size with a unit.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a size with a unit.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

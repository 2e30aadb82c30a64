// Package measure holds the small arithmetic every benchmark of Berth
// prints with: medians of repeated runs (the machine is shared and noisy),
// rates, and the verdict against a target.
package measure

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Median returns the middle of ds (the upper middle for an even count).
func Median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// MBps is n bytes in d, in MiB per second.
func MBps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / (1 << 20) }

// Rates prints the rate of each run: "[512 498 530]".
func Rates(n int64, ds []time.Duration) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprintf("%.0f", MBps(n, d))
	}
	return "[" + strings.Join(out, " ") + "]"
}

// Round rounds each run to 10 ms for printing.
func Round(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// Verdict says whether a target was met.
func Verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

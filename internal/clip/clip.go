// Package clip shortens untrusted or long text before it goes into an error
// message, a log line or a report: valid UTF-8, at most a given number of
// bytes, the cut marked. It imports only the standard library so that every
// package, control/wire included, may use it.
package clip

import (
	"strings"
	"unicode/utf8"
)

// Mark ends a string that was cut.
const Mark = "…"

// String makes s valid UTF-8 and at most limit bytes (the mark included),
// cutting at a rune boundary and marking the cut with Mark. A limit too
// small for the mark gives the mark alone.
func String(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= limit {
		return s
	}
	cut := limit - len(Mark)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + Mark
}

package telemetry

import "strings"

// MaxNameLen is the longest check name, event kind or key the control
// endpoint accepts (control/wire's MaxIDLen; a test keeps them equal).
const MaxNameLen = 128

// Name turns s into a name the wire accepts for an event kind or a check:
// bytes other than letters, digits, '.', '_' and '-' become '-', a leading
// non-alphanumeric byte is dropped, and the result is at most
// MaxNameLen bytes. An empty result is "unnamed".
func Name(s string) string { return sanitize(s, false) }

// Key is Name that also keeps '/', as label keys and cache keys may.
func Key(s string) string { return sanitize(s, true) }

func sanitize(s string, slash bool) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < MaxNameLen; i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		switch {
		case alnum:
			b.WriteByte(c)
		case b.Len() == 0:
			// nothing may come before the first letter or digit
		case c == '.' || c == '_' || c == '-' || slash && c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "unnamed"
	}
	return b.String()
}

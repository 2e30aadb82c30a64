package hostid

import (
	"strconv"
	"strings"
)

// osReleaseValue returns key's value from os-release text (shell-style
// KEY=value lines, the value optionally quoted).
func osReleaseValue(text, key string) string {
	for line := range strings.Lines(text) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || k != key {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			return uq
		}
		return strings.Trim(v, `'"`)
	}
	return ""
}

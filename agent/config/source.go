package config

import (
	"strconv"
	"unicode/utf8"
)

// Source records where a Config was read from: the file's name and the line
// and column of every key in it, so that Validate can point at the line of
// a bad value. Parse and Load set Config.Source; a Config built in code has
// none and its errors carry no line.
//
// A Source is not configuration: it is never rendered, and Equal reports
// any two Sources equal, so that cmp.Diff and cmp.Equal of two Configs
// compare settings only.
type Source struct {
	// Name is the name given to Parse or the path given to Load.
	Name string
	pos  map[string]position
}

type position struct{ line, column int }

// Equal reports true: where a config came from is not part of its value.
func (*Source) Equal(*Source) bool { return true }

// at returns the position of key, else of fallback, else zeros.
func (s *Source) at(key, fallback string) position {
	if s == nil {
		return position{}
	}
	if p, ok := s.pos[key]; ok {
		return p
	}
	return s.pos[fallback]
}

func (s *Source) name() string {
	if s == nil {
		return ""
	}
	return s.Name
}

// joinKey appends a mapping key to a key path: engine + flavor is
// engine.flavor, cache.upstreams + docker.io is cache.upstreams["docker.io"].
func joinKey(parent, name string) string {
	if !isIdent(name) {
		return parent + "[" + quote(name) + "]"
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// indexKey appends a list index to a key path: cache.storage[1].
func indexKey(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// quote quotes s for a message, cut to 80 characters, spelling out every non-ASCII character
// (\u0435 for a Cyrillic "е") when there is one, so that look-alike and
// invisible characters show.
func quote(s string) string {
	if utf8.RuneCountInString(s) > 80 {
		s = string([]rune(s)[:80]) + "..."
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strconv.QuoteToASCII(s)
		}
	}
	return strconv.Quote(s)
}

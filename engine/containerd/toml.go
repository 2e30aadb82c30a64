package containerd

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// encodeTOML writes a table tree as TOML: within a table its plain values
// first, then its sub-tables, each group in key order, so that equal
// settings give equal bytes and drift shows as a byte difference. It
// handles what YAML and JSON decode into (strings, bools, numbers, lists,
// maps), which is all engine.settings can hold; a number that JSON decoded
// as a float but is whole is written as an integer, as containerd's integer
// keys (oom_score, max_recv_message_size) need.
func encodeTOML(root map[string]any) ([]byte, error) {
	var b strings.Builder
	if err := writeTable(&b, nil, root); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

func writeTable(b *strings.Builder, path []string, t map[string]any) error {
	keys := slices.Sorted(maps.Keys(t))
	var tables, tableArrays []string
	for _, k := range keys {
		switch v := t[k].(type) {
		case map[string]any:
			tables = append(tables, k)
			continue
		case []any:
			if len(v) > 0 && allTables(v) {
				tableArrays = append(tableArrays, k)
				continue
			}
		}
		s, err := tomlValue(t[k])
		if err != nil {
			return fmt.Errorf("%s: %w", dotted(append(path, k)), err)
		}
		fmt.Fprintf(b, "%s%s = %s\n", indent(path), tomlKey(k), s)
	}
	for _, k := range tables {
		p := append(slices.Clone(path), k)
		// A table that only holds tables needs no header of its own.
		if sub := t[k].(map[string]any); len(sub) == 0 || hasValues(sub) {
			fmt.Fprintf(b, "\n%s[%s]\n", indent(path), dotted(p))
		}
		if err := writeTable(b, p, t[k].(map[string]any)); err != nil {
			return err
		}
	}
	for _, k := range tableArrays {
		p := append(slices.Clone(path), k)
		for _, e := range t[k].([]any) {
			fmt.Fprintf(b, "\n%s[[%s]]\n", indent(path), dotted(p))
			if err := writeTable(b, p, e.(map[string]any)); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasValues reports whether t holds anything but tables.
func hasValues(t map[string]any) bool {
	for _, v := range t {
		switch v := v.(type) {
		case map[string]any:
		case []any:
			if len(v) == 0 || !allTables(v) {
				return true
			}
		default:
			return true
		}
	}
	return false
}

func allTables(list []any) bool {
	for _, e := range list {
		if _, ok := e.(map[string]any); !ok {
			return false
		}
	}
	return true
}

func tomlValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return tomlString(v), nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.FormatInt(int64(v), 10), nil
		}
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return "", fmt.Errorf("%v cannot be written to TOML", v)
		}
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case []string:
		out := make([]any, len(v))
		for i, s := range v {
			out[i] = s
		}
		return tomlValue(out)
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, err := tomlValue(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case map[string]any:
		// An inline table, for a table inside a list of values.
		keys := slices.Sorted(maps.Keys(v))
		parts := make([]string, len(keys))
		for i, k := range keys {
			s, err := tomlValue(v[k])
			if err != nil {
				return "", err
			}
			parts[i] = tomlKey(k) + " = " + s
		}
		return "{" + strings.Join(parts, ", ") + "}", nil
	case nil:
		return "", fmt.Errorf("TOML has no null; remove the key or give it a value")
	}
	return "", fmt.Errorf("a %T cannot be written to TOML", v)
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func tomlKey(k string) string {
	if bareKey.MatchString(k) {
		return k
	}
	return tomlString(k)
}

// tomlString quotes s as a TOML basic string. strconv.Quote would not do:
// its \x and \a escapes are not TOML.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func dotted(path []string) string {
	parts := make([]string, len(path))
	for i, k := range path {
		parts[i] = tomlKey(k)
	}
	return strings.Join(parts, ".")
}

func indent(path []string) string {
	if len(path) == 0 {
		return ""
	}
	return strings.Repeat("  ", len(path)-1)
}

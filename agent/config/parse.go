package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/units"
)

// MaxFileSize is the largest configuration Parse and Load accept, in bytes.
const MaxFileSize = 1 << 20

// maxDepth bounds how deeply values may nest. Only engine.settings nests
// freely, and daemon.json needs a handful of levels.
const maxDepth = 64

// Load reads the configuration file at path and parses it like Parse, naming
// path in every error. Every error is Errors: a file that cannot be read
// gives one problem that names the path, says what to do and wraps the os
// error (errors.Is(err, fs.ErrNotExist) for a missing file).
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, unreadable(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Config{}, unreadable(path, err)
	}
	return Parse(path, data)
}

// unreadable explains a config file that cannot be read. A missing file is
// the usual mistake of a first run, so it says how to give one.
func unreadable(path string, err error) Errors {
	reason := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err // the path is already in front of the message
	}
	msg := fmt.Sprintf("cannot read the config file: %v", reason)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		msg = "the config file does not exist; write it (see docs/configuration.md), or give its path with --config or " + paths.ConfigEnv
	case errors.Is(err, fs.ErrPermission):
		msg += "; run as a user that may read it, or give another file with --config or " + paths.ConfigEnv
	default:
		msg += "; give the path of a readable file with --config or " + paths.ConfigEnv
	}
	return Errors{{File: path, Msg: msg, Err: err}}
}

// Parse reads a configuration, YAML or JSON (a document whose first
// character is { or [ is read as JSON), on top of Default(), and validates
// it. name is used in messages only. It returns the Config, or a zero
// Config and Errors that list every problem found (the first 100, then a
// count), each with its key and line.
//
// The decoding is strict:
//   - unknown keys, duplicate keys and values of the wrong type are errors;
//   - booleans are true or false, unquoted: yes, no, on, off and "true" are
//     errors;
//   - a key written with no value (or null) keeps its default;
//   - anchors, aliases, merge keys (<<), tags other than the standard ones,
//     and more than one YAML document are refused;
//   - the file must be UTF-8 and at most MaxFileSize bytes; an empty file is
//     the defaults;
//   - strings may not hold control or invisible format characters (except
//     line breaks and tabs inside engine.settings);
//   - keys that look like inline secrets (key, password, sasToken…) are
//     refused with a pointer to keyFile, sasFile, tokenFile or the
//     environment.
func Parse(name string, data []byte) (Config, error) {
	root, errs := parseTree(name, data)
	if len(errs) > 0 {
		return Config{}, errs
	}
	d := &decoder{src: &Source{Name: name, pos: map[string]position{}}}
	cfg := Default()
	cfg.Source = d.src
	if root != nil {
		d.decode(root, root, reflect.ValueOf(&cfg).Elem(), "")
	}
	errs = d.errs
	// A key that could not be decoded kept its default; checking that
	// default would only repeat the problem.
	failed := make(map[string]bool, len(d.errs))
	for _, e := range d.errs {
		failed[e.Key] = true
	}
	for _, e := range cfg.validate() {
		if !coveredBy(e.Key, failed) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return Config{}, errs.sorted().capped(name)
	}
	return cfg, nil
}

// coveredBy reports whether key, or a key it is under, is in failed:
// cache.storage[0].url is under cache.storage[0] and cache.storage.
func coveredBy(key string, failed map[string]bool) bool {
	if failed[key] {
		return true
	}
	for i := len(key) - 1; i > 0; i-- {
		if (key[i] == '.' || key[i] == '[') && failed[key[:i]] {
			return true
		}
	}
	return false
}

// parseTree checks the bytes and parses them into a node tree. It returns
// nil and no errors for a document with nothing in it.
func parseTree(name string, data []byte) (*yaml.Node, Errors) {
	fail := func(line, col int, format string, args ...any) Errors {
		return Errors{{File: name, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}}
	}
	if len(data) > MaxFileSize {
		return nil, fail(0, 0, "the file is larger than %d bytes (1 MiB); that is not an agent configuration", MaxFileSize)
	}
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		return nil, fail(0, 0, "the file is UTF-16; save it as UTF-8 (in PowerShell: Set-Content -Encoding utf8)")
	}
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, size := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			off += size
		}
		line, col := lineCol(data, off)
		return nil, fail(line, col, "the file is not valid UTF-8 (byte 0x%02x); save it as UTF-8", data[off])
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return parseJSON(name, data)
	}
	return parseYAML(name, data)
}

func parseYAML(name string, data []byte) (root *yaml.Node, errs Errors) {
	defer func() {
		// The parser is third-party code fed hostile input: turn a panic
		// into an error rather than bringing the agent down.
		if r := recover(); r != nil {
			root, errs = nil, Errors{{File: name, Msg: fmt.Sprintf("the YAML parser failed: %v", r)}}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(name, data, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, Errors{{File: name, Line: next.Line, Column: next.Column,
			Msg: "a second YAML document starts here; the file must hold exactly one"}}
	case !errors.Is(err, io.EOF):
		return nil, yamlError(name, data, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root = doc.Content[0]
	if isNull(root) && root.Anchor == "" {
		return nil, nil
	}
	return root, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a syntax error of the YAML parser into an error with a line.
func yamlError(name string, data []byte, err error) Errors {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if lines := bytes.Split(data, []byte("\n")); line > 0 && line <= len(lines) {
		if indent := bytes.TrimLeft(lines[line-1], " "); bytes.HasPrefix(indent, []byte("\t")) {
			msg += "; indent with spaces: YAML does not allow tabs"
		}
	}
	return Errors{{File: name, Line: line, Msg: "not valid YAML: " + msg}}
}

// lineCol returns the 1-based line and column (in characters) of a byte offset.
func lineCol(data []byte, off int) (line, col int) {
	before := data[:min(off, len(data))]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = 1 + utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
	return line, col
}

// A decoder walks a node tree against the Go type it fills, through the
// yaml tags, and collects every problem rather than stopping at the first.
type decoder struct {
	src  *Source
	errs Errors
}

// failAt records a problem with key, at the position of node at.
func (d *decoder) failAt(at *yaml.Node, key, format string, args ...any) {
	d.errs = append(d.errs, FieldError{
		File: d.src.Name, Key: key, Line: at.Line, Column: at.Column,
		Msg: fmt.Sprintf(format, args...),
	})
}

func (d *decoder) mark(key string, at *yaml.Node) {
	d.src.pos[key] = position{at.Line, at.Column}
}

// standardTags are the YAML core tags a config may use, written or implied.
var standardTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true,
	"!!map": true, "!!seq": true, "!!timestamp": true,
}

// check refuses what no config needs and what makes a parser a weapon:
// aliases (billion laughs), anchors, merge keys and custom tags.
func (d *decoder) check(n *yaml.Node, key string) bool {
	switch tag := n.ShortTag(); {
	case n.Kind == yaml.AliasNode:
		d.failAt(n, key, "aliases (*%s) are not allowed; write the value out", n.Value)
	case n.Anchor != "":
		d.failAt(n, key, "anchors (&%s) are not allowed; write each value out", n.Anchor)
	case tag == "!!merge":
		d.failAt(n, key, "merge keys (<<) are not allowed; write the keys out")
	case !standardTags[tag]:
		d.failAt(n, key, "the tag %s is not allowed; remove it", quote(n.Tag))
	default:
		return true
	}
	return false
}

// decode fills v from n. at is where problems are reported: the key node
// for a mapping value, the item itself in a list.
func (d *decoder) decode(n, at *yaml.Node, v reflect.Value, key string) {
	if d.check(n, key) {
		d.value(n, at, v, key)
	}
}

// element fills a list item or map value, for which null means the
// element's default (a struct, a settings value) or is an error.
func (d *decoder) element(n, at *yaml.Node, v reflect.Value, key string) {
	if !d.check(n, key) {
		return
	}
	if isNull(n) && (v.Kind() == reflect.Struct || v.Kind() == reflect.Interface) {
		return
	}
	d.value(n, at, v, key)
}

func (d *decoder) value(n, at *yaml.Node, v reflect.Value, key string) {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.failAt(at, key, "is %s; want %s", describe(n), wantText(v))
			return
		}
		if err := u.UnmarshalText([]byte(n.Value)); err != nil {
			var ve *units.ValueError
			if errors.As(err, &ve) {
				// quote, not the plain quoting of ValueError.Error: a
				// hostile value is cut and its look-alike characters shown.
				d.failAt(at, key, "%s %s", quote(ve.Value), ve.Problem)
			} else {
				d.failAt(at, key, "%v", err)
			}
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, at, v, key)
	case reflect.String:
		if s, ok := d.str(n, at, key); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if b, ok := d.boolean(n, at, key); ok {
			v.SetBool(b)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.failAt(at, key, "is %s; want a whole number", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Slice:
		d.list(n, at, v, key)
	case reflect.Map:
		d.mapping(n, at, v, key)
	case reflect.Interface:
		if x, ok := d.plain(n, key, 0); ok && x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		d.failAt(at, key, "cannot hold a value of Go type %s (a bug in agent/config)", v.Type())
	}
}

// A field is a key of a struct, found through its yaml tag.
type field struct {
	name  string
	index []int
}

// fieldsOf lists the keys of a struct type in order, with the fields of
// ",inline" structs in place.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" || !sf.IsExported() {
			continue
		}
		if opts == "inline" && sf.Type.Kind() == reflect.Struct {
			for _, f := range fieldsOf(sf.Type) {
				fs = append(fs, field{f.name, append([]int{i}, f.index...)})
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		fs = append(fs, field{name, []int{i}})
	}
	return fs
}

func (d *decoder) structure(n, at *yaml.Node, v reflect.Value, key string) {
	fields := fieldsOf(v.Type())
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if n.Kind != yaml.MappingNode {
		subject := "is"
		if key == "" {
			subject = "the file holds"
		}
		d.failAt(at, key, "%s %s; want a mapping with the keys %s", subject, describe(n), strings.Join(names, ", "))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name, ok := d.keyName(kn, key, seen)
		if !ok {
			continue
		}
		path := joinKey(key, name)
		d.mark(path, kn)
		idx := -1
		for j, f := range fields {
			if f.name == name {
				idx = j
			}
		}
		if idx < 0 {
			d.failAt(kn, path, "%s", unknownKey(key, name, names))
			continue
		}
		if !d.check(vn, path) || isNull(vn) {
			continue // null keeps the default
		}
		d.value(vn, kn, v.FieldByIndex(fields[idx].index), path)
	}
}

// keyName checks a mapping key: a string, not seen before in this mapping.
func (d *decoder) keyName(kn *yaml.Node, parent string, seen map[string]*yaml.Node) (string, bool) {
	if !d.check(kn, parent) {
		return "", false
	}
	if kn.Kind != yaml.ScalarNode || kn.ShortTag() != "!!str" {
		d.failAt(kn, parent, "a key is %s; keys must be strings (quote it)", describe(kn))
		return "", false
	}
	name := kn.Value
	if first, dup := seen[name]; dup {
		d.failAt(kn, joinKey(parent, name), "duplicate key; it is first written at line %d", first.Line)
		return "", false
	}
	seen[name] = kn
	if r, bad := badRune(name, false); bad {
		d.failAt(kn, joinKey(parent, name), "the key contains %s; retype it", runeName(r))
		return "", false
	}
	return name, true
}

func (d *decoder) list(n, at *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.SequenceNode {
		d.failAt(at, key, "is %s; want a list", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, item := range n.Content {
		path := indexKey(key, i)
		d.mark(path, item)
		e := newElem(v.Type().Elem())
		d.element(item, item, e, path)
		s = reflect.Append(s, e)
	}
	v.Set(s)
}

func (d *decoder) mapping(n, at *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.failAt(at, key, "is %s; want a mapping", describe(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name, ok := d.keyName(kn, key, seen)
		if !ok {
			continue
		}
		path := joinKey(key, name)
		d.mark(path, kn)
		e := newElem(v.Type().Elem())
		d.element(vn, kn, e, path)
		m.SetMapIndex(reflect.ValueOf(name).Convert(v.Type().Key()), e)
	}
	v.Set(m)
}

// newElem returns a settable list item or map value holding its default.
func newElem(t reflect.Type) reflect.Value {
	e := reflect.New(t).Elem()
	switch t {
	case reflect.TypeFor[blobtier.Config]():
		e.Set(reflect.ValueOf(DefaultStorage()))
	case reflect.TypeFor[upstream.Config]():
		e.Set(reflect.ValueOf(DefaultUpstream()))
	}
	return e
}

func (d *decoder) str(n, at *yaml.Node, key string) (string, bool) {
	switch {
	case n.Kind != yaml.ScalarNode:
		d.failAt(at, key, "is %s; want a string", describe(n))
	case isNull(n):
		d.failAt(at, key, `is empty (null); want a string (write "" for an empty one)`)
	default:
		if r, bad := badRune(n.Value, false); bad {
			d.failAt(at, key, "contains %s; retype the value", runeName(r))
			return "", false
		}
		// Numbers and booleans are taken as written: version: 1.10 is "1.10".
		return n.Value, true
	}
	return "", false
}

func (d *decoder) boolean(n, at *yaml.Node, key string) (bool, bool) {
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" && (n.Value == "true" || n.Value == "false"):
		return n.Value == "true", true
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && (n.Value == "true" || n.Value == "false"):
		d.failAt(at, key, "%s is quoted, so it is a string; write true or false without quotes", quote(n.Value))
	case n.Kind == yaml.ScalarNode && !isNull(n):
		d.failAt(at, key, "%s is not a boolean; write true or false", quote(n.Value))
	default:
		d.failAt(at, key, "is %s; want true or false", describe(n))
	}
	return false, false
}

// plain converts a free-form value (engine.settings) into what
// encoding/json would give for the same JSON: map[string]any, []any,
// string, float64, bool or nil.
func (d *decoder) plain(n *yaml.Node, key string, depth int) (any, bool) {
	if !d.check(n, key) {
		return nil, false
	}
	if depth > maxDepth {
		d.failAt(n, key, "values nest deeper than %d levels", maxDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		seen := map[string]*yaml.Node{}
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			name, good := d.keyName(n.Content[i], key, seen)
			if !good {
				ok = false
				continue
			}
			v, good := d.plain(n.Content[i+1], joinKey(key, name), depth+1)
			m[name], ok = v, ok && good
		}
		return m, ok
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		ok := true
		for i, item := range n.Content {
			v, good := d.plain(item, indexKey(key, i), depth+1)
			s, ok = append(s, v), ok && good
		}
		return s, ok
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				d.failAt(n, key, "%s is not a boolean; write true or false", quote(n.Value))
				return nil, false
			}
			return b, true
		case "!!int", "!!float":
			f, err := strconv.ParseFloat(n.Value, 64)
			if err != nil {
				err = n.Decode(&f) // YAML spellings: 0x1F, 0o17, 1_000
			}
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				d.failAt(n, key, "%s is not a number JSON can hold", quote(n.Value))
				return nil, false
			}
			return f, true
		}
		if r, bad := badRune(n.Value, true); bad {
			d.failAt(n, key, "contains %s; retype the value", runeName(r))
			return nil, false
		}
		return n.Value, true
	}
	d.failAt(n, key, "is %s; want a JSON value", describe(n))
	return nil, false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "is X; want Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if utf8.RuneCountInString(v) > 40 {
			v = string([]rune(v)[:40]) + "..."
		}
		switch n.ShortTag() {
		case "!!null":
			return "empty (null)"
		case "!!bool":
			return "the boolean " + v
		case "!!int", "!!float":
			return "the number " + v
		}
		return "the string " + quote(v)
	}
	return "an alias"
}

func wantText(v reflect.Value) string {
	switch v.Addr().Interface().(type) {
	case *units.Duration:
		return "a duration such as 90s, 5m or 1h30m"
	case *units.Size:
		return "a size such as 512MiB or 50GiB"
	}
	return "a single value"
}

// badRune returns the first character that has no place in a config
// string: control characters, and invisible format characters such as
// zero-width spaces and bidi overrides, which make a value read differently
// from what it is. multiline allows tab, CR and LF.
func badRune(s string, multiline bool) (rune, bool) {
	for _, r := range s {
		if multiline && (r == '\t' || r == '\n' || r == '\r') {
			continue
		}
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			return r, true
		}
	}
	return 0, false
}

func runeName(r rune) string {
	if unicode.IsControl(r) {
		return fmt.Sprintf("the control character %U", r)
	}
	return fmt.Sprintf("the invisible character %U", r)
}

// unknownKey explains an unknown key: a secret written inline, a value that
// belongs in a file (username → usernameFile), or a likely misspelling.
func unknownKey(parent, name string, allowed []string) string {
	where := "in " + parent
	if parent == "" {
		where = "at the top level"
	}
	msg := fmt.Sprintf("unknown key %s %s", quote(name), where)
	file := ""
	for _, a := range allowed {
		if strings.EqualFold(a, name+"File") {
			file = a
		}
	}
	secret := looksSecret(name)
	if secret && file == "" {
		file = secretFile(name, allowed)
	}
	switch {
	case secret && file != "":
		return msg + "; secrets never go in the config: put it in a file and set " + file + " to its path" + envHint(file)
	case secret:
		return msg + "; secrets never go in the config: keep it in a file or the environment"
	case file != "":
		return msg + "; put the value in a file and set " + file + " to its path"
	}
	if s := suggest(name, allowed); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg + "; allowed: " + strings.Join(allowed, ", ")
}

// secretFile picks the key, among allowed, that names the file for a
// secret written inline: sasToken → sasFile, accountKey → keyFile.
func secretFile(name string, allowed []string) string {
	n := strings.ToLower(name)
	var want []string
	switch {
	case strings.Contains(n, "sas") || strings.Contains(n, "sig"):
		want = []string{"sasFile"}
	case strings.Contains(n, "pass") || strings.Contains(n, "pwd"):
		want = []string{"passwordFile"}
	case strings.Contains(n, "token"):
		want = []string{"tokenFile", "sasFile"}
	case strings.HasSuffix(n, "key") || strings.Contains(n, "connectionstring"):
		want = []string{"keyFile"}
	}
	for _, w := range want {
		if slices.Contains(allowed, w) {
			return w
		}
	}
	return ""
}

func envHint(fileKey string) string {
	switch fileKey {
	case "keyFile":
		return ", or set " + azstore.EnvAccountKey
	case "sasFile":
		return ", or set " + azstore.EnvSASToken
	}
	return ""
}

// suggest returns the allowed key nearest to name, if it is near enough to
// be a misspelling.
func suggest(name string, allowed []string) string {
	best, bestDist := "", 3
	if len(name) > 64 {
		return ""
	}
	if len(name) < 5 {
		bestDist = 2
	}
	for _, a := range allowed {
		if dist := levenshtein(strings.ToLower(name), strings.ToLower(a)); dist < bestDist {
			best, bestDist = a, dist
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur := make([]int, len(rb)+1)
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(rb)]
}

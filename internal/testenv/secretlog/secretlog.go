// Package secretlog fails a test whose logs hold one of its secrets. A test
// (or a testenv helper: Azurite, the token endpoint) registers the secrets
// it uses and the logs its binaries write; when the test ends every log is
// searched for every secret, as written and encoded (base64, URL, JSON), and
// a hit fails the test naming the file and line and a prefix of the secret.
package secretlog

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// minLen is the shortest secret searched for: a shorter one would be
// found by chance.
const minLen = 8

// Guard holds one test's secrets and logs.
type Guard struct {
	t       testing.TB
	mu      sync.Mutex
	secrets map[string]string // value → what it is
}

var (
	guardsMu sync.Mutex
	guards   = map[testing.TB]*Guard{}
)

// For returns t's guard, made at the first call.
func For(t testing.TB) *Guard {
	guardsMu.Lock()
	defer guardsMu.Unlock()
	g, ok := guards[t]
	if !ok {
		g = &Guard{t: t, secrets: map[string]string{}}
		guards[t] = g
		t.Cleanup(func() {
			guardsMu.Lock()
			delete(guards, t)
			guardsMu.Unlock()
		})
	}
	return g
}

// Secret registers value, described by what ("storage account key"). A
// value shorter than 8 characters cannot be searched for and fails the
// test.
func (g *Guard) Secret(what, value string) {
	g.t.Helper()
	value = strings.TrimSpace(value)
	if len(value) < minLen {
		g.t.Fatalf("secretlog: %s is %d characters, too short to search logs for", what, len(value))
	}
	g.mu.Lock()
	g.secrets[value] = what
	g.mu.Unlock()
}

// Logs registers files or folders (searched recursively) of logs. They
// are searched when the test ends, before the folders that were made
// before this call (t.TempDir) are removed; missing ones are skipped.
func (g *Guard) Logs(paths ...string) {
	g.t.Cleanup(func() {
		for _, p := range paths {
			g.check(p, Files(p))
		}
	})
}

// Output registers a captured output (a binary's stderr), read when the
// test ends: register it before the cleanup that stops the binary, so
// that it runs after.
func (g *Guard) Output(name string, text func() string) {
	g.t.Cleanup(func() {
		g.check(name, []Source{{Name: name, Text: text}})
	})
}

func (g *Guard) check(where string, srcs []Source) {
	g.t.Helper()
	g.mu.Lock()
	secrets := make(map[string]string, len(g.secrets))
	for v, w := range g.secrets {
		secrets[v] = w
	}
	g.mu.Unlock()
	// Said under -v, so that a run shows what was searched.
	g.t.Logf("secretlog: %d secrets searched for in %d logs (%s)", len(secrets), len(srcs), where)
	for _, h := range Scan(srcs, secrets) {
		g.t.Errorf("secretlog: %s", h)
	}
}

// Source is a log to search: Text returns its content.
type Source struct {
	Name string
	Text func() string
}

// Files lists the files under path (or path itself) as sources.
func Files(path string) []Source {
	var out []Source
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		out = append(out, Source{Name: p, Text: func() string {
			b, _ := os.ReadFile(p)
			return string(b)
		}})
		return nil
	})
	return out
}

// Hit is a secret found in a log.
type Hit struct {
	Source string
	Line   int
	What   string // what the secret is
	Prefix string // its first characters, never the whole
	Form   string // as written, base64, …
}

func (h Hit) String() string {
	return fmt.Sprintf("%s:%d holds the %s (%s…, %s)", h.Source, h.Line, h.What, h.Prefix, h.Form)
}

// Scan searches every source for every secret in its forms.
func Scan(srcs []Source, secrets map[string]string) []Hit {
	var hits []Hit
	for _, s := range srcs {
		sc := bufio.NewScanner(strings.NewReader(s.Text()))
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			for v, what := range secrets {
				for _, f := range forms(v) {
					if strings.Contains(line, f[1]) {
						hits = append(hits, Hit{Source: s.Name, Line: n, What: what, Prefix: v[:4], Form: f[0]})
						break
					}
				}
			}
		}
	}
	return hits
}

// forms are the ways a secret shows in a log, in order: as it is, in JSON
// (where & becomes \u0026), URL-escaped, and base64 (standard and URL).
func forms(v string) [][2]string {
	js, _ := json.Marshal(v)
	return [][2]string{
		{"as written", v},
		{"JSON", strings.Trim(string(js), `"`)},
		{"URL-escaped", url.QueryEscape(v)},
		{"path-escaped", url.PathEscape(v)},
		{"base64", strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(v)), "=")},
		{"base64url", base64.RawURLEncoding.EncodeToString([]byte(v))},
	}
}

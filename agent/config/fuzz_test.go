package config

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// checkRoundTrip renders cfg as YAML and as JSON and checks that each
// parses back to the same Config, and that the redacted forms render.
func checkRoundTrip(t *testing.T, cfg Config) {
	t.Helper()
	for _, form := range []struct {
		name    string
		marshal func(Config) ([]byte, error)
	}{{"yaml", marshalYAML}, {"json", marshalJSON}} {
		out, err := form.marshal(cfg)
		if err != nil {
			t.Fatalf("render as %s: %v", form.name, err)
		}
		if len(out) > MaxFileSize {
			continue // indentation can make a rendering larger than its input
		}
		back, err := Parse("roundtrip."+form.name, out)
		if err != nil {
			t.Fatalf("the %s rendering does not parse: %v\n%s", form.name, err, out)
		}
		if diff := cmp.Diff(cfg, back); diff != "" {
			t.Fatalf("the %s rendering parses to another Config (-before +after):\n%s\n%s", form.name, diff, out)
		}
	}
	if _, err := cfg.ShowYAML(); err != nil {
		t.Fatalf("ShowYAML: %v", err)
	}
	if _, err := cfg.ShowJSON(); err != nil {
		t.Fatalf("ShowJSON: %v", err)
	}
}

func nested(open, close string, n int) string {
	return strings.Repeat(open, n) + strings.Repeat(close, n)
}

// hostileCases are inputs built to hurt a parser. Each must come back
// quickly, without a panic, with an error containing wantErr, or with a
// Config when wantErr is empty.
var hostileCases = []struct {
	name    string
	in      string
	wantErr string
}{
	{"deep YAML flow nesting", "engine:\n  settings:\n    a: " + nested("[", "]", 20000), "exceeded max depth"},
	{"deep settings", "engine:\n  settings:\n    a: " + nested("[", "]", 100), "values nest deeper than 64 levels"},
	{"deep block nesting", deepBlock(200), "values nest deeper than 64 levels"},
	{"deep JSON", `{"engine":{"settings":{"a":` + nested("[", "]", 300000) + `}}}`, "values nest deeper than 64 levels"},
	{"deep JSON objects", strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000), "values nest deeper than 64 levels"},
	{"billion laughs", billionLaughs, "anchors (&a) are not allowed"},
	{"alias as a key", "a: &k x\n*k : y\n", "aliases (*k) are not allowed"},
	{"self-referencing alias", "engine: &e\n  settings: *e\n", "anchors (&e)"},
	{"too big", "#" + strings.Repeat("x", MaxFileSize), "larger than 1048576 bytes"},
	{"exactly the size limit", "#" + strings.Repeat("x", MaxFileSize-1), ""},
	{"huge key", strings.Repeat("k", 500000) + ": 1\n", "not valid YAML"},
	{"long key", strings.Repeat("k", 1000) + ": 1\n", `unknown key "kkkk`},
	{"many unknown keys", manyKeys(20000), "... and 19900 more problems"},
	{"many bad storage entries", "cache:\n  storage:\n" + strings.Repeat("    - url: [x]\n", 20000), "... and 19900 more problems"},
	{"many settings", "engine:\n  settings:\n" + manySettings(5000), ""},
	{"huge string value", "agent:\n  id: " + strings.Repeat("v", 900000) + "\n", ""},
	{"tab after a key", "agent:\n  id:\tx\n", ""},
	{"tab indentation", "agent:\n\t id: x\n", "YAML does not allow tabs"},
	{"nulls everywhere", "agent: ~\ncontrol: ~\nengine: {settings: {a: ~}}\ncache: {storage: [null], upstreams: {x: ~}}\n", "cache.storage[0].url: is missing"},
	{"null key", "~: x\n", "a key is empty (null)"},
	{"list as key", "? [a]\n: b\n", "a key is a list"},
	{"binary tag", "agent:\n  id: !!binary aGVsbG8=\n", `the tag "!!binary" is not allowed`},
	{"explicit str tag", "agent:\n  id: !!str 123\n", ""},
	{"wrong types everywhere", wrongTypes, "engine.managed: is a list; want true or false"},
	{"Inf size", "cache:\n  local:\n    maxSize: InfGiB\n", `"InfGiB" is too large`},
	{"negative size", "cache:\n  local:\n    maxSize: -1GiB\n", `"-1GiB" is not a size`},
	{"huge size", "cache:\n  local:\n    maxSize: 1e400GiB\n", `"1e400GiB" is not a size`},
	{"size without unit", "cache:\n  local:\n    maxSize: 1024\n", `"1024" is not a size`},
	{"negative duration", "engine:\n  upgrade:\n    healthTimeout: -1m\n", `"-1m" is negative`},
	{"overflowing duration", "engine:\n  upgrade:\n    healthTimeout: 9999999999h\n", `"9999999999h" is not a duration`},
	{"duration without unit", "engine:\n  upgrade:\n    healthTimeout: 120\n", `"120" is not a duration`},
	{"fullwidth digits", "engine:\n  upgrade:\n    healthTimeout: １０s\n", `"\uff11\uff10s" is not a duration`},
	{"look-alike enum", "engine:\n  flavor: d\u043ecker\n", `"d\u043ecker" is not allowed`},
	{"bidi override", "control:\n  url: \"https://example.com/\u202egpj.exe\"\n", "invisible character U+202E"},
	{"zero-width key", "engine\u200b:\n  flavor: docker\n", `the key contains the invisible character U+200B`},
	{"NUL byte", "agent:\n  id: a\x00b\n", "control characters are not allowed"},
	{"escaped NUL", "agent:\n  id: \"a\\0b\"\n", "control character U+0000"},
	{"line separator", "agent:\n  id: \"a\\Lb\"\n", "invisible character U+2028"},
	{"lone surrogate escape", "agent:\n  id: \"\\ud800\"\n", "not valid YAML"},
	{"JSON lone surrogate", `{"agent": {"id": "\ud800"}}`, ""},
	{"invalid UTF-8", "agent:\n  id: \xff\xfe\n", "not valid UTF-8 (byte 0xff)"},
	{"UTF-16", "\xff\xfea\x00:\x00", "the file is UTF-16"},
	{"JSON array", `[{"agent": {}}]`, "the file holds a list"},
	{"JSON scalar key types", `{"agent": {"labels": {"a": 1, "b": null}}}`, `agent.labels.b: is empty (null)`},
	{"int overflow in settings", "engine:\n  settings:\n    n: 99999999999999999999999999\n", ""},
	{"document end marker", "agent: {}\n...\n", ""},
	{"directive", "%YAML 1.1\n---\nagent: {}\n", ""},
	{"second document of garbage", "agent: {}\n---\n: : :\n", "not valid YAML"},
}

func deepBlock(n int) string {
	var b strings.Builder
	b.WriteString("engine:\n  settings:\n")
	for i := range n {
		b.WriteString(strings.Repeat(" ", 4+i) + "k:\n")
	}
	return b.String()
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("k" + strconv.Itoa(i) + ": 1\n")
	}
	return b.String()
}

func manySettings(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("    k" + strconv.Itoa(i) + ": [1, two, {three: 3}]\n")
	}
	return b.String()
}

const billionLaughs = `engine:
  settings:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

const wrongTypes = `agent: {id: [x], stateDir: {a: b}, labels: [a]}
control: {url: 1, auth: [token], reportInterval: {s: 1}, tokenFile: true}
engine: {managed: [true], flavor: {}, settings: [1], upgrade: [1], releases: x}
cache: {enabled: 1, listen: [], local: [], storage: {}, upstreams: [], allow: x, prewarm: {}}
health: [listen]
provision: {allowReboot: "false"}
`

func TestHostile(t *testing.T) {
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			cfg, err := Parse("agent.yaml", []byte(tc.in))
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Parse took %v", d)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Parse: %.2000v", err)
			case tc.wantErr == "":
				checkRoundTrip(t, cfg)
			case err == nil:
				t.Fatalf("Parse succeeded, want an error containing %q", tc.wantErr)
			case !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("Parse: got %.2000v\nwant an error containing %q", err, tc.wantErr)
			}
			var errs Errors
			if err != nil && !errors.As(err, &errs) {
				t.Errorf("error %T is not Errors", err)
			}
			for _, e := range errs {
				if len(e.Error()) > 2000 {
					t.Errorf("error line of %d bytes: %.200s...", len(e.Error()), e.Error())
				}
			}
		})
	}
}

func TestWrongTypesEverywhere(t *testing.T) {
	_, err := Parse("agent.yaml", []byte(wrongTypes))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse: %v", err)
	}
	// One error per wrong value, none from the checks of the defaults
	// those keys kept.
	if len(errs) != 22 {
		t.Errorf("got %d errors, want 22:\n%v", len(errs), err)
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.in))
	}
	for _, tc := range errorCases {
		f.Add([]byte(tc.in))
	}
	for _, tc := range hostileCases {
		if len(tc.in) < 4096 {
			f.Add([]byte(tc.in))
		}
	}
	for _, name := range []string{"full.yaml", "full.json", "bad.yaml", "bad.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %#v is not a non-empty Errors", err)
			}
			return
		}
		checkRoundTrip(t, cfg)
	})
}

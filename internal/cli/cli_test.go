package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		out  string
		n    int
	}{
		{[]string{"upgrade", "1.0", "--output", "json"}, []string{"upgrade", "1.0"}, "json", 0},
		{[]string{"--output=json", "status"}, []string{"status"}, "json", 0},
		{[]string{"a", "--", "--output"}, []string{"a", "--output"}, "text", 0},
		// After "--" nothing is a flag, however many words follow.
		{[]string{"--", "x", "--output", "json"}, []string{"x", "--output", "json"}, "text", 0},
		// A flag's value may look like a flag or like "--".
		{[]string{"--output", "--", "x"}, []string{"x"}, "--", 0},
		{[]string{"-v", "x", "--n", "3"}, []string{"x"}, "text", 3},
		{[]string{"-", "--n=2"}, []string{"-"}, "text", 2},
		{nil, nil, "text", 0},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		out := fs.String("output", "text", "")
		fs.Bool("v", false, "")
		n := fs.Int("n", 0, "")
		pos, err := ParseInterspersed(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *out != tc.out || *n != tc.n {
			t.Errorf("ParseInterspersed(%q) = %q, output=%q, n=%d, %v; want %q, %q, %d", tc.args, pos, *out, *n, err, tc.pos, tc.out, tc.n)
		}
	}
	for _, args := range [][]string{{"x", "--nope"}, {"--n", "x"}, {"--n"}} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Int("n", 0, "")
		if _, err := ParseInterspersed(fs, args); err == nil {
			t.Errorf("ParseInterspersed(%q) accepted", args)
		}
	}
}

// called is what a test command saw.
type called struct {
	Name     string
	Args     []string
	Output   Format
	LogLevel string
	Config   string
	DB       string
	Force    bool
}

// testProgram is a two-level table like the binaries': a program-wide
// --config, a group with a shared --db, commands with arguments.
func testProgram(got *called, fail error) *Program {
	var config, db string
	var force bool
	record := func(ctx context.Context, in *Invocation) error {
		*got = called{Name: in.Name, Args: in.Args, Output: in.Output, LogLevel: in.LogLevel, Config: config, DB: db, Force: force}
		in.Log.Info("info line")
		in.Log.Warn("warn line")
		return fail
	}
	return &Program{
		Name:    "prog",
		Summary: "A test program.",
		Flags:   func(fs *flag.FlagSet) { fs.StringVar(&config, "config", "/etc/prog.yaml", "config `PATH`") },
		Getenv:  func(string) string { return "" },
		Commands: []*Command{
			{Name: "run", Summary: "run in the foreground", Daemon: true, Run: record},
			{Name: "version", Summary: "print the version", Run: record},
			{Name: "token", Summary: "manage tokens",
				Flags: func(fs *flag.FlagSet) { fs.StringVar(&db, "db", "", "the store `DSN`") },
				Commands: []*Command{
					{Name: "list", Summary: "list tokens", Run: record},
					{Name: "revoke", Args: "ID", ArgsDoc: "the token ID", Summary: "revoke a token", Run: record,
						Flags: func(fs *flag.FlagSet) { fs.BoolVar(&force, "force", false, "even if in use") }},
				}},
			{Name: "pull", Args: "IMAGE...", Summary: "pull images", Run: record},
			{Name: "validate", Args: "[PATH]", Summary: "check a config", Run: record},
		},
	}
}

func TestProgramRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		fail       error
		wantCode   int
		want       called   // zero: the command did not run
		wantStderr []string // substrings
		noStderr   []string
	}{
		{name: "bare", args: nil, wantCode: 2, wantStderr: []string{"usage: prog COMMAND", "token revoke ID", "pull IMAGE..."}},
		{name: "help", args: []string{"help"}, wantCode: 0, wantStderr: []string{"commands:", "validate [PATH]", "--config PATH"}},
		{name: "-h", args: []string{"-h"}, wantCode: 0, wantStderr: []string{"commands:"}},
		{name: "help command", args: []string{"help", "token", "revoke"}, wantCode: 0, wantStderr: []string{"usage: prog token revoke ID [flags]", "--force", "--db DSN"}},
		{name: "help unknown", args: []string{"help", "frob"}, wantCode: 2, wantStderr: []string{`unknown command "frob"`}},
		{name: "unknown command", args: []string{"frob"}, wantCode: 2, wantStderr: []string{`prog: unknown command "frob"`, "commands:"}},
		{name: "plain", args: []string{"version"}, wantCode: 0,
			want: called{Name: "prog version", Output: Text, LogLevel: "warn", Config: "/etc/prog.yaml"}},
		{name: "program flag before", args: []string{"--config", "x.yaml", "version"}, wantCode: 0,
			want: called{Name: "prog version", Output: Text, LogLevel: "warn", Config: "x.yaml"}},
		{name: "program flag after", args: []string{"version", "--config=x.yaml", "--output", "json"}, wantCode: 0,
			want: called{Name: "prog version", Output: JSON, LogLevel: "warn", Config: "x.yaml"}},
		{name: "bad output", args: []string{"version", "--output", "yaml"}, wantCode: 2, wantStderr: []string{`prog version: --output "yaml": want text or json`}},
		{name: "bad output before", args: []string{"--output", "xml", "token", "list"}, wantCode: 2, wantStderr: []string{`--output "xml"`}},
		{name: "bad log level", args: []string{"version", "--log-level", "loud"}, wantCode: 2, wantStderr: []string{`--log-level "loud"`}},
		{name: "one-shot logs warnings only", args: []string{"version"}, wantCode: 0,
			want:       called{Name: "prog version", Output: Text, LogLevel: "warn", Config: "/etc/prog.yaml"},
			wantStderr: []string{"warn line"}, noStderr: []string{"info line"}},
		{name: "one-shot asks for more", args: []string{"version", "--log-level", "INFO"}, wantCode: 0,
			want:       called{Name: "prog version", Output: Text, LogLevel: "info", Config: "/etc/prog.yaml"},
			wantStderr: []string{"info line"}},
		{name: "daemon logs info", args: []string{"run"}, wantCode: 0,
			want:       called{Name: "prog run", Output: Text, LogLevel: "info", Config: "/etc/prog.yaml"},
			wantStderr: []string{"info line"}},
		{name: "unknown flag", args: []string{"version", "--nope"}, wantCode: 2, wantStderr: []string{"prog version: flag provided but not defined: -nope", "prog version -h"}},
		{name: "bad flag value", args: []string{"token", "revoke", "x", "--force=maybe"}, wantCode: 2, wantStderr: []string{"invalid boolean value"}},
		{name: "command -h", args: []string{"version", "-h"}, wantCode: 0, wantStderr: []string{"usage: prog version [flags]", "print the version", "--output text|json"}},
		{name: "sub -h", args: []string{"token", "revoke", "--help"}, wantCode: 0, wantStderr: []string{"usage: prog token revoke ID [flags]", "arguments: the token ID", "--force", "--db DSN", "--config PATH"}},
		{name: "group -h", args: []string{"token", "-h"}, wantCode: 0, wantStderr: []string{"usage: prog token COMMAND", "list", "revoke ID", "--db DSN"}},
		{name: "group without sub", args: []string{"token"}, wantCode: 2, wantStderr: []string{"prog token: want list or revoke"}},
		{name: "group unknown sub", args: []string{"token", "frob", "--db", "x"}, wantCode: 2, wantStderr: []string{`unknown token command "frob": want list or revoke`}},
		{name: "group flag before sub", args: []string{"token", "--db", "d", "revoke", "t1"}, wantCode: 0,
			want: called{Name: "prog token revoke", Args: []string{"t1"}, Output: Text, LogLevel: "warn", Config: "/etc/prog.yaml", DB: "d"}},
		{name: "flags everywhere", args: []string{"--db=d", "--log-level", "debug", "token", "revoke", "--force", "t1", "--output", "json"}, wantCode: 0,
			want: called{Name: "prog token revoke", Args: []string{"t1"}, Output: JSON, LogLevel: "debug", Config: "/etc/prog.yaml", DB: "d", Force: true}},
		{name: "too few args", args: []string{"token", "revoke"}, wantCode: 2, wantStderr: []string{"revoke takes the token ID, got []"}},
		{name: "too many args", args: []string{"token", "list", "x"}, wantCode: 2, wantStderr: []string{`list takes no arguments, got ["x"]`}},
		{name: "variadic none", args: []string{"pull"}, wantCode: 2, wantStderr: []string{"pull takes IMAGE..."}},
		{name: "variadic", args: []string{"pull", "a", "b", "--", "-c"}, wantCode: 0,
			want: called{Name: "prog pull", Args: []string{"a", "b", "-c"}, Output: Text, LogLevel: "warn", Config: "/etc/prog.yaml"}},
		{name: "optional absent", args: []string{"validate"}, wantCode: 0,
			want: called{Name: "prog validate", Output: Text, LogLevel: "warn", Config: "/etc/prog.yaml"}},
		{name: "optional extra", args: []string{"validate", "a", "b"}, wantCode: 2, wantStderr: []string{"validate takes [PATH]"}},
		{name: "failure", args: []string{"version"}, fail: errors.New("boom"), wantCode: 1,
			want:       called{Name: "prog version", Output: Text, LogLevel: "warn", Config: "/etc/prog.yaml"},
			wantStderr: []string{"prog version: boom"}, noStderr: []string{"-h shows"}},
		{name: "usage failure", args: []string{"version"}, fail: fmt.Errorf("load: %w", Usagef("bad key")), wantCode: 2,
			want:       called{Name: "prog version", Output: Text, LogLevel: "warn", Config: "/etc/prog.yaml"},
			wantStderr: []string{"prog version: load: bad key"}},
		{name: "coded failure", args: []string{"version"}, fail: configError{}, wantCode: 2,
			want: called{Name: "prog version", Output: Text, LogLevel: "warn", Config: "/etc/prog.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got called
			var stdout, stderr bytes.Buffer
			code := testProgram(&got, tc.fail).Run(t.Context(), tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("invocation (-want +got):\n%s", diff)
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
			for _, s := range tc.noStderr {
				if strings.Contains(stderr.String(), s) {
					t.Errorf("stderr has %q:\n%s", s, stderr.String())
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("the scaffold wrote to stdout: %q", stdout.String())
			}
		})
	}
}

func TestLogLevelFromEnv(t *testing.T) {
	var got called
	p := testProgram(&got, nil)
	p.Getenv = func(k string) string {
		if k == "BERTH_LOG_LEVEL" {
			return "Debug"
		}
		return ""
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"version"}, "debug"},
		{[]string{"run"}, "debug"},
		{[]string{"version", "--log-level", "error"}, "error"},
	} {
		if code := p.Run(t.Context(), tc.args, io.Discard, io.Discard); code != 0 || got.LogLevel != tc.want {
			t.Errorf("%q: exit %d, level %q; want 0, %q", tc.args, code, got.LogLevel, tc.want)
		}
	}
}

type configError struct{}

func (configError) Error() string { return "config: line 3: unknown key" }
func (configError) ExitCode() int { return 2 }

func TestExitCode(t *testing.T) {
	exitErr := exec.Command("sh", "-c", "exit 2").Run()
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"help", fmt.Errorf("x: %w", flag.ErrHelp), 0},
		{"plain", errors.New("x"), 1},
		{"usage", Usage(errors.New("x")), 2},
		{"usagef wrapped", fmt.Errorf("a: %w", Usagef("b %d", 1)), 2},
		{"coder", fmt.Errorf("load: %w", configError{}), 2},
		{"child exit", fmt.Errorf("dockerd: %w", exitErr), 1},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("%s: ExitCode(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
	if Usage(nil) != nil {
		t.Error("Usage(nil) is not nil")
	}
}

func TestArity(t *testing.T) {
	for _, tc := range []struct {
		usage    string
		min, max int
	}{
		{"", 0, 0},
		{"ID", 1, 1},
		{"[PATH]", 0, 1},
		{"IMAGE...", 1, -1},
		{"[IMAGE...]", 0, -1},
		{"FROM TO [NOTE]", 2, 3},
	} {
		if min, max := arity(tc.usage); min != tc.min || max != tc.max {
			t.Errorf("arity(%q) = %d, %d; want %d, %d", tc.usage, min, max, tc.min, tc.max)
		}
	}
}

type withSlices struct {
	Hosts    []string          `json:"hosts"`
	Labels   map[string]string `json:"labels"`
	Next     *withSlices       `json:"next,omitempty"`
	Any      any               `json:"any"`
	Raw      []byte            `json:"raw"`
	Skip     []string          `json:"skip,omitzero"`
	Interval Duration          `json:"interval"`
	When     time.Time         `json:"when"`
	hidden   []string
}

func TestPrintJSON(t *testing.T) {
	var nilSlice []withSlices
	in := withSlices{Next: &withSlices{}, Any: map[string][]int{"a": nil}, Interval: Duration(3 * time.Second), hidden: nil}
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"nil", nil, "null\n"},
		{"nil slice", nilSlice, "[]\n"},
		{"nil map", map[string]int(nil), "{}\n"},
		{"string", "x", "\"x\"\n"},
		{"nested", in, `{
  "hosts": [],
  "labels": {},
  "next": {
    "hosts": [],
    "labels": {},
    "any": null,
    "raw": null,
    "interval": "0s",
    "when": "0001-01-01T00:00:00Z"
  },
  "any": {
    "a": []
  },
  "raw": null,
  "interval": "3s",
  "when": "0001-01-01T00:00:00Z"
}
`},
	} {
		var b bytes.Buffer
		if err := PrintJSON(&b, tc.v); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, b.String()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	// The caller's value is not changed.
	if in.Hosts != nil || in.Next.Hosts != nil || in.Any.(map[string][]int)["a"] != nil {
		t.Error("PrintJSON changed its argument")
	}
}

func TestInvocationPrint(t *testing.T) {
	for _, tc := range []struct {
		out  Format
		want string
	}{
		{Text, "1 host\n"},
		{JSON, "[\n  \"h\"\n]\n"},
	} {
		var b bytes.Buffer
		in := &Invocation{Output: tc.out, Stdout: &b}
		err := in.Print([]string{"h"}, func(w io.Writer) error { _, err := fmt.Fprintln(w, "1 host"); return err })
		if err != nil || b.String() != tc.want {
			t.Errorf("Print as %s = %q, %v; want %q", tc.out, b.String(), err, tc.want)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		text string
	}{
		{10 * time.Second, "10s"},
		{90 * time.Second, "1m30s"},
		{0, "0s"},
	} {
		b, _ := Duration(tc.d).MarshalText()
		var back Duration
		if err := back.UnmarshalText(b); string(b) != tc.text || err != nil || time.Duration(back) != tc.d {
			t.Errorf("Duration(%v) = %q, back %v, %v; want %q", tc.d, b, back, err, tc.text)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte("ten")); err == nil {
		t.Error("UnmarshalText(ten) accepted")
	}
}

// Package cli is the command-line scaffold berth-agent and berth-control
// share, after Caddy's cmd/commands.go: a table of commands, each with its
// name, arguments, summary, flags and function; program-wide flags that may
// come before or after the command; one check of --output; one logger built
// from --log-level; help for every command; and one mapping from errors to
// exit codes (0 success, 1 failure, 2 usage or config error).
//
// The scaffold writes only to the streams it is given, so commands run side
// by side in tests.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"

	"github.com/berthhq/berth/internal/logging"
)

// Exit codes, the same for both binaries (SPEC: "0 success, 1 failure, 2
// usage or config error").
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Format is the value of --output.
type Format string

// The output formats every printing command honours.
const (
	Text Format = "text"
	JSON Format = "json"
)

// Program is one binary: its name, its program-wide flags and its command
// table.
type Program struct {
	// Name is the binary's name, the first word of every message.
	Name string
	// Summary is one line under the usage line of the command table.
	Summary string
	// Flags registers the program-wide flags besides --output and
	// --log-level, which the scaffold always adds (berth-agent: --config).
	// They are accepted before or after the command and its arguments.
	Flags func(fs *flag.FlagSet)
	// Commands is the table; commands not built yet are not in it.
	Commands []*Command
	// Getenv reads the environment (BERTH_LOG_LEVEL); nil is os.Getenv.
	Getenv func(string) string
}

// Command is one entry of the table, or a group of subcommands.
type Command struct {
	// Name is the word that selects the command.
	Name string
	// Args is the arguments' usage line, which also sets how many the
	// command accepts: "ID" exactly one, "[PATH]" at most one, "IMAGE..."
	// one or more, "[IMAGE...]" any number, "" none.
	Args string
	// ArgsDoc says in words what the arguments are ("one host ID"); it is
	// shown in the help and in the error for a wrong count.
	ArgsDoc string
	// Summary is the one line shown in the table.
	Summary string
	// Help is an optional paragraph for COMMAND -h.
	Help string
	// Flags registers the command's own flags. A group's flags are
	// registered for each of its subcommands too.
	Flags func(fs *flag.FlagSet)
	// Run does the command. A command has Run or Commands, not both.
	Run func(ctx context.Context, in *Invocation) error
	// Commands are the subcommands ("engine status").
	Commands []*Command
	// Daemon marks a long-running command (agent run, control serve): its
	// logger defaults to info instead of warn.
	Daemon bool
}

// Invocation is what a command's Run gets: its arguments, flags, output
// format, logger and streams.
type Invocation struct {
	// Name is the program and command path, "berth-control hosts show".
	Name string
	// Args are the positional arguments, their count already checked.
	Args []string
	// Flags is the parsed flag set (program-wide and the command's), for
	// Visit: config files let explicitly set flags win.
	Flags *flag.FlagSet
	// Output is the checked --output.
	Output Format
	// LogLevel is the effective level: --log-level, else BERTH_LOG_LEVEL,
	// else warn (info for a daemon).
	LogLevel string
	// Log writes text lines to Stderr at LogLevel.
	Log    *slog.Logger
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment.
	Getenv func(string) string
}

// JSON writes v to Stdout as indented JSON, nil lists as [] and nil maps
// as {}.
func (in *Invocation) JSON(v any) error { return PrintJSON(in.Stdout, v) }

// Print is the one place a command honours --output: v as JSON, or text
// writing the human form to Stdout.
func (in *Invocation) Print(v any, text func(w io.Writer) error) error {
	if in.Output == JSON {
		return in.JSON(v)
	}
	return text(in.Stdout)
}

// ExitCoder is an error that chooses the process's exit code. A package
// marks its usage or config errors with ExitCode() == ExitUsage without
// importing cli (the agent's config errors, say).
type ExitCoder interface {
	ExitCode() int
}

type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }
func (usageError) ExitCode() int   { return ExitUsage }

// Usage marks err as a usage or config error: the program exits 2. Usage(nil)
// is nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// Usagef is Usage(fmt.Errorf(format, a...)).
func Usagef(format string, a ...any) error { return Usage(fmt.Errorf(format, a...)) }

// ExitCode maps a command's error to the process's exit code.
func ExitCode(err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	// A child process's *exec.ExitError has an ExitCode too; its code is the
	// child's business, not ours: a failed child is a failure.
	var xe *exec.ExitError
	var c ExitCoder
	if errors.As(err, &c) && !errors.As(err, &xe) && c.ExitCode() > 0 {
		return c.ExitCode()
	}
	return ExitFailure
}

// Run runs the command args selects and returns the exit code. Errors,
// help and the command table go to stderr; only the command writes to
// stdout.
func (p *Program) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	getenv := p.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	root := &Command{Name: p.Name, Commands: p.Commands}
	path, rest, extra := p.resolve(root, args)
	node := path[len(path)-1]
	name := p.commandName(path)

	// help [COMMAND...] shows the table or a command's usage.
	if len(path) == 1 && extra == "help" {
		target, _, unknown := p.resolve(root, positionals(rest)[1:])
		if unknown != "" {
			return p.fail(stderr, p.Name, Usagef("help: unknown command %q", unknown))
		}
		p.help(stderr, target)
		return ExitOK
	}

	var g globals
	fs := p.flagSet(path, &g)
	pos, err := ParseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		p.help(stderr, path)
		return ExitOK
	}
	if node.Run == nil {
		// The program itself or a group: a subcommand is missing or unknown.
		switch {
		case extra != "" && len(path) == 1:
			fmt.Fprintf(stderr, "%s: unknown command %q\n\n", p.Name, extra)
			p.help(stderr, path)
			return ExitUsage
		case extra != "":
			return p.fail(stderr, name, Usagef("unknown %s command %q: want %s", node.Name, extra, names(node.Commands)))
		case err != nil:
			return p.fail(stderr, name, Usage(err))
		case len(path) == 1:
			p.help(stderr, path)
			return ExitUsage
		}
		return p.fail(stderr, name, Usagef("want %s", names(node.Commands)))
	}
	if err != nil {
		return p.fail(stderr, name, Usage(err))
	}
	in, err := p.invocation(node, name, pos, fs, g, stdout, stderr, getenv)
	if err != nil {
		return p.fail(stderr, name, err)
	}
	return p.fail(stderr, name, node.Run(ctx, in))
}

// globals holds the flags the scaffold adds to every command.
type globals struct {
	output   string
	logLevel string
}

const (
	outputFlag   = "output"
	logLevelFlag = "log-level"
)

// flagSet builds the flags of the command at the end of path: program-wide
// first, then each group's, then the command's own.
func (p *Program) flagSet(path []*Command, g *globals) *flag.FlagSet {
	fs := flag.NewFlagSet(p.commandName(path), flag.ContinueOnError)
	// The scaffold prints errors and help itself, once.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	p.programFlags(fs, g)
	for _, c := range path[1:] {
		if c.Flags != nil {
			c.Flags(fs)
		}
	}
	return fs
}

func (p *Program) programFlags(fs *flag.FlagSet, g *globals) {
	fs.StringVar(&g.output, outputFlag, string(Text), "output format, `text|json`")
	fs.StringVar(&g.logLevel, logLevelFlag, "", "log `LEVEL`: debug, info, warn or error (default: $BERTH_LOG_LEVEL, else warn; info for a daemon)")
	if p.Flags != nil {
		p.Flags(fs)
	}
}

// invocation checks --output, --log-level and the argument count, once for
// every command.
func (p *Program) invocation(c *Command, name string, pos []string, fs *flag.FlagSet, g globals, stdout, stderr io.Writer, getenv func(string) string) (*Invocation, error) {
	out := Format(g.output)
	if out != Text && out != JSON {
		return nil, Usagef("--output %q: want text or json", g.output)
	}
	level := effectiveLevel(g.logLevel, getenv("BERTH_LOG_LEVEL"), c.Daemon)
	log, err := logging.New(stderr, "text", level)
	if err != nil {
		return nil, Usagef("--log-level %q: want debug, info, warn or error", level)
	}
	if err := checkArgs(c, pos); err != nil {
		return nil, err
	}
	return &Invocation{Name: name, Args: pos, Flags: fs, Output: out, LogLevel: level, Log: log,
		Stdout: stdout, Stderr: stderr, Getenv: getenv}, nil
}

// effectiveLevel picks the log level: the flag, else the environment, else
// warn for a one-shot command (its output is what the operator asked for;
// INFO lines around it are noise) and info for a daemon.
func effectiveLevel(flagValue, env string, daemon bool) string {
	switch {
	case flagValue != "":
		return strings.ToLower(flagValue)
	case env != "":
		return strings.ToLower(env)
	case daemon:
		return "info"
	}
	return "warn"
}

// fail prints err under name and returns its exit code.
func (p *Program) fail(stderr io.Writer, name string, err error) int {
	code := ExitCode(err)
	if code == ExitOK {
		return code
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	if code == ExitUsage {
		fmt.Fprintf(stderr, "(%s -h shows the usage)\n", name)
	}
	return code
}

func (p *Program) commandName(path []*Command) string {
	parts := []string{p.Name}
	for _, c := range path[1:] {
		parts = append(parts, c.Name)
	}
	return strings.Join(parts, " ")
}

// resolve walks args to the command they name. It returns the path from the
// root, the args without the command words, and the first positional word
// that named no subcommand of a group ("" if none). Flags may come before
// the command words, so it must know which flags take a value: those of the
// program and of every command below the one reached so far.
func (p *Program) resolve(root *Command, args []string) (path []*Command, rest []string, extra string) {
	path = []*Command{root}
	for i := 0; i < len(args); i++ {
		a := args[i]
		node := path[len(path)-1]
		if a == "--" || node.Run != nil || extra != "" {
			rest = append(rest, args[i:]...)
			break
		}
		if isFlag(a) {
			rest = append(rest, a)
			if !strings.Contains(a, "=") && p.takesValue(node, flagName(a)) && i+1 < len(args) {
				i++
				rest = append(rest, args[i])
			}
			continue
		}
		if sub := find(node.Commands, a); sub != nil {
			path = append(path, sub)
			continue
		}
		extra = a
		rest = append(rest, a)
	}
	return path, rest, extra
}

// takesValue reports whether flag name, seen before the command is known,
// takes the next word as its value.
func (p *Program) takesValue(node *Command, name string) bool {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	p.programFlags(fs, &globals{})
	if f := fs.Lookup(name); f != nil {
		return !isBool(f)
	}
	var walk func(c *Command) bool
	walk = func(c *Command) bool {
		if c.Flags != nil {
			fs := flag.NewFlagSet("", flag.ContinueOnError)
			c.Flags(fs)
			if f := fs.Lookup(name); f != nil && !isBool(f) {
				return true
			}
		}
		for _, s := range c.Commands {
			if walk(s) {
				return true
			}
		}
		return false
	}
	return walk(node)
}

func find(cs []*Command, name string) *Command {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// names lists the subcommands as "a, b or c".
func names(cs []*Command) string {
	var ns []string
	for _, c := range cs {
		ns = append(ns, c.Name)
	}
	if len(ns) < 2 {
		return strings.Join(ns, "")
	}
	return strings.Join(ns[:len(ns)-1], ", ") + " or " + ns[len(ns)-1]
}

// positionals are the words of args that are neither flags nor, roughly,
// their values; help uses it to find the command to explain.
func positionals(args []string) []string {
	var pos []string
	for _, a := range args {
		if !isFlag(a) {
			pos = append(pos, a)
		}
	}
	return pos
}

// arity is how many arguments a usage line accepts; max < 0 is no limit.
func arity(usage string) (min, max int) {
	for _, w := range strings.Fields(usage) {
		optional := strings.HasPrefix(w, "[")
		if strings.HasSuffix(strings.TrimRight(w, "]"), "...") {
			max = -1
		} else if max >= 0 {
			max++
		}
		if !optional {
			min++
		}
	}
	return min, max
}

func checkArgs(c *Command, pos []string) error {
	min, max := arity(c.Args)
	if len(pos) >= min && (max < 0 || len(pos) <= max) {
		return nil
	}
	want := c.ArgsDoc
	switch {
	case want != "":
	case c.Args == "":
		want = "no arguments"
	default:
		want = c.Args
	}
	return Usagef("%s takes %s, got %q", c.Name, want, pos)
}

// ParseInterspersed parses fs from args, letting flags come before, between
// and after the positional arguments ("engine upgrade 24.0.7 --output
// json"), and returns the positional ones in order. "--" ends the flags:
// every word after it is positional.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !isFlag(a) {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		// An unknown flag takes no value here; Parse reports it.
		if f := fs.Lookup(flagName(a)); f != nil && !isBool(f) && !strings.Contains(a, "=") && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return pos, nil
}

// isFlag reports whether a looks like a flag: "-x" or "--x", not "-".
func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// flagName is the name in "-name", "--name" or "--name=value".
func flagName(a string) string {
	a = strings.TrimPrefix(a[1:], "-")
	name, _, _ := strings.Cut(a, "=")
	return name
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

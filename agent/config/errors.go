package config

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem in a configuration. Its text is
//
//	FILE:LINE:COLUMN: KEY: MSG
//
// for example
//
//	agent.yaml:12:3: engine.upgrade.healthTimeout: "5 minutes" is not a duration; write a Go duration such as 90s, 5m or 1h30m
//
// Parts that are unknown are left out (no line for a Config built in code,
// no key for a file that is not YAML at all).
type FieldError struct {
	// File is the name given to Parse or the path given to Load.
	File string
	// Key is the dotted path of the key: engine.upgrade.healthTimeout,
	// cache.storage[1].auth, cache.upstreams["docker.io"].endpoint.
	Key string
	// Line and Column (1-based) point at the key; 0 when unknown.
	Line, Column int
	// Msg says what is wrong and what is allowed.
	Msg string
	// Err is the cause when there is one: the os error of a file Load
	// could not read (errors.Is(err, fs.ErrNotExist) for a missing file).
	Err error
}

// Error formats the error as FILE:LINE:COLUMN: KEY: MSG.
func (e FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the cause, or nil.
func (e FieldError) Unwrap() error { return e.Err }

// Errors is every problem found in one configuration, in file order. Parse,
// Load and Validate return it as their only error type, a file Load cannot
// read included, so that errors.As(err, &Errors{}) tells a config error
// (the CLI exits 2) from any other; use errors.As to get it.
type Errors []FieldError

// ExitCode is 2, SPEC's code for a usage or config error: the CLI reads it
// (internal/cli.ExitCoder) without this package importing the CLI.
func (Errors) ExitCode() int { return 2 }

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns each FieldError, for errors.As.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// err returns es as an error, or nil when there is none (never a typed nil).
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// maxErrors is how many problems Parse reports; a file with more is not
// worth reading further.
const maxErrors = 100

// capped keeps the first maxErrors problems and says how many it left out.
func (es Errors) capped(file string) Errors {
	if len(es) <= maxErrors {
		return es
	}
	more := FieldError{File: file, Msg: fmt.Sprintf("... and %d more problems", len(es)-maxErrors)}
	return append(es[:maxErrors:maxErrors], more)
}

// sorted orders es by line, then column; errors without a line go last.
func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return es
}

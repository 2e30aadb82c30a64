// Package cli holds what berth-agent and berth-control share on the command
// line: flag parsing that lets flags follow arguments, and JSON output.
package cli

import (
	"encoding/json"
	"flag"
	"io"
)

// ParseInterspersed parses fs from args, letting flags come after the
// positional arguments ("engine upgrade 24.0.7 --output json"), and returns
// the positional ones in order.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// PrintJSON writes v as indented JSON, the --output json form of every
// command.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// help writes the usage of the command at the end of path: the command
// table for the program itself, the subcommands for a group, the arguments
// and flags for a command.
func (p *Program) help(w io.Writer, path []*Command) {
	c := path[len(path)-1]
	name := p.commandName(path)
	switch {
	case len(path) == 1:
		fmt.Fprintf(w, "usage: %s COMMAND [ARGS] [flags]\n", p.Name)
		if p.Summary != "" {
			fmt.Fprintf(w, "\n%s\n", p.Summary)
		}
	case c.Run == nil:
		fmt.Fprintf(w, "usage: %s COMMAND [ARGS] [flags]\n\n%s\n", name, c.Summary)
	default:
		fmt.Fprintf(w, "usage: %s [flags]\n\n%s\n", strings.Join(append([]string{name}, strings.Fields(c.Args)...), " "), c.Summary)
	}
	if c.Help != "" {
		fmt.Fprintf(w, "\n%s\n", c.Help)
	}
	if c.ArgsDoc != "" {
		fmt.Fprintf(w, "\narguments: %s\n", c.ArgsDoc)
	}
	if len(c.Commands) > 0 {
		fmt.Fprintln(w, "\ncommands:")
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		for _, line := range table(c.Commands, nil) {
			fmt.Fprintf(tw, "  %s\t%s\n", line[0], line[1])
		}
		if len(path) == 1 {
			fmt.Fprintf(tw, "  help [COMMAND...]\tshow the commands, or one command's arguments and flags\n")
		}
		tw.Flush()
	}
	fs := p.flagSet(path, &globals{})
	global := flag.NewFlagSet("", flag.ContinueOnError)
	p.programFlags(global, &globals{})
	var own []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if global.Lookup(f.Name) == nil {
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		fmt.Fprintln(w, "\nflags:")
		printFlags(w, own)
	}
	var all []*flag.Flag
	global.VisitAll(func(f *flag.Flag) { all = append(all, f) })
	fmt.Fprintln(w, "\nprogram flags (before or after the command):")
	printFlags(w, all)
	if len(c.Commands) > 0 {
		fmt.Fprintf(w, "\n%s COMMAND -h shows a command's arguments and flags.\n", name)
	}
}

// table lists the commands below cs, one line each: "hosts show ID" and
// its summary.
func table(cs []*Command, prefix []string) [][2]string {
	var lines [][2]string
	for _, c := range cs {
		words := append(append([]string{}, prefix...), c.Name)
		if len(c.Commands) > 0 {
			lines = append(lines, table(c.Commands, words)...)
			continue
		}
		lines = append(lines, [2]string{strings.Join(append(words, strings.Fields(c.Args)...), " "), c.Summary})
	}
	return lines
}

func printFlags(w io.Writer, fs []*flag.Flag) {
	for _, f := range fs {
		value, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if value != "" {
			line += " " + value
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, usage)
	}
}

// Command berth-control is Berth's control endpoint and the operator's
// command line: the fleet server, its operator CLI and the signed release
// workflow. This file lists the commands for internal/cli, which parses
// flags, checks --output, builds the logger and maps errors to exit codes;
// each command's flags and wiring are in its own file.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return program().Run(ctx, args, stdout, stderr)
}

// program is berth-control's command table.
func program() *cli.Program {
	return &cli.Program{
		Name:    "berth-control",
		Summary: "Berth's control endpoint (serve), the operator's view of the fleet (hosts), its rollouts, tokens and signed releases.",
		Commands: []*cli.Command{
			serveCommand(),
			hostsCommand(),
			rolloutsCommand(),
			tokenCommand(),
			releasesCommand(),
			{Name: "version", Summary: "print version, commit, build date and platform", Run: cmdVersion},
		},
	}
}

func cmdVersion(_ context.Context, in *cli.Invocation) error {
	info := buildinfo.Get()
	return in.Print(info, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "berth-control %s (commit %s, built %s, %s, %s)\n", info.Version, info.Commit, info.Date, info.Platform, info.Go)
		return err
	})
}

// Command berth-control is Berth's control endpoint and the operator's
// command line: the fleet server, its operator CLI and the signed release
// workflow. This file only parses flags and wires packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/logging"
	"github.com/berthhq/berth/packaging/tufrepo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks errors that exit 2.
type usageError struct{ error }

// Unwrap lets run see flag.ErrHelp through it (-h exits 0).
func (u usageError) Unwrap() error { return u.error }

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"releases", "init|add|publish|list signed release metadata", cmdReleases},
		{"serve", "run the control endpoint (API, web page)", cmdServe},
		{"hosts", "list|show hosts", cmdHosts},
		{"rollouts", "create|list|show|pause|resume|abort rollouts", notYet},
		{"token", "issue|list|revoke tokens", cmdToken},
		{"version", "print version, commit, build date and platform", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: berth-control COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:], stdout, stderr)
		if err == nil {
			return 0
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "berth-control %s: %v\n", c.name, err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stderr, "berth-control: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func notYet(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("not available in this build of berth-control yet")
}

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("output", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	info := buildinfo.Get()
	if *output == "json" {
		return cli.PrintJSON(stdout, info)
	}
	fmt.Fprintf(stdout, "berth-control %s (commit %s, built %s, %s, %s)\n", info.Version, info.Commit, info.Date, info.Platform, info.Go)
	return nil
}

func cmdReleases(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("want init, add, publish or list")}
	}
	sub := args[0]
	fs := flag.NewFlagSet("releases "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	repo := fs.String("repo", "", "the release repository folder (keys and metadata)")
	output := fs.String("output", "text", "text or json")
	var pkg tufrepo.Package
	var to string
	var cred azstore.Credential
	switch sub {
	case "add":
		fs.StringVar(&pkg.Kind, "kind", "", "engine or agent")
		fs.StringVar(&pkg.Flavor, "flavor", "", "docker or containerd (engines)")
		fs.StringVar(&pkg.Version, "version", "", "the package's version")
		fs.StringVar(&pkg.OS, "os", "", "linux or windows")
		fs.StringVar(&pkg.Arch, "arch", "amd64", "amd64")
		fs.StringVar(&pkg.Channel, "channel", "stable", "release channel")
	case "publish":
		fs.StringVar(&to, "to", "", "an Azure Blob container URL or a folder")
		fs.StringVar(&cred.Auth, "auth", "managed-identity", "managed-identity, shared-key, sas or none")
		fs.StringVar(&cred.ClientID, "client-id", "", "user-assigned managed identity client id")
		fs.StringVar(&cred.KeyFile, "key-file", "", "file with the storage account key (else AZURE_STORAGE_KEY)")
		fs.StringVar(&cred.SASFile, "sas-file", "", "file with a SAS token (else AZURE_STORAGE_SAS_TOKEN)")
	case "init", "list":
	default:
		return usageError{fmt.Errorf("unknown releases command %q: want init, add, publish or list", sub)}
	}
	rest, err := cli.ParseInterspersed(fs, args[1:])
	if err != nil {
		return usageError{err}
	}
	if *repo == "" {
		return usageError{errors.New("--repo DIR is required")}
	}
	log, _ := logging.New(stderr, "text", logging.LevelFromEnv("info"))
	opts := []tufrepo.Option{tufrepo.WithLogger(log)}
	switch sub {
	case "init":
		if len(rest) != 0 {
			return usageError{errors.New("init takes no arguments")}
		}
		if err := tufrepo.Init(*repo, opts...); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "release repository created in %s; agents trust %s/metadata/root.json\n", *repo, *repo)
		return nil
	case "add":
		if len(rest) != 1 {
			return usageError{errors.New("add takes the package FILE")}
		}
		t, err := tufrepo.Add(*repo, pkg, rest[0], opts...)
		if err != nil {
			return err
		}
		if *output == "json" {
			return cli.PrintJSON(stdout, t)
		}
		fmt.Fprintf(stdout, "signed %s (%d bytes, sha256 %s)\n", t.Path, t.Length, t.SHA256)
		return nil
	case "publish":
		if to == "" {
			return usageError{errors.New("--to URL|DIR is required")}
		}
		if err := tufrepo.Publish(ctx, *repo, to, cred, opts...); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published %s to %s\n", *repo, azstore.Redact(to))
		return nil
	case "list":
		ts, err := tufrepo.List(*repo)
		if err != nil {
			return err
		}
		if *output == "json" {
			return cli.PrintJSON(stdout, ts)
		}
		printTargets(stdout, ts)
		return nil
	}
	return nil
}

func printTargets(w io.Writer, ts []tufrepo.Target) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tFLAVOR\tVERSION\tOS/ARCH\tCHANNEL\tBYTES\tPATH")
	for _, t := range ts {
		p := t.Package
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%d\t%s\n", p.Kind, p.Flavor, p.Version, p.OS, p.Arch, p.Channel, t.Length, t.Path)
	}
	tw.Flush()
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// releasesCommand is berth-control releases init|add|publish|list: the
// signed release metadata in a local folder (--repo), published to a blob
// container or a folder.
func releasesCommand() *cli.Command {
	r := &releasesCmd{}
	return &cli.Command{
		Name:    "releases",
		Summary: "sign and publish engine and agent packages (TUF metadata)",
		Flags:   r.flags,
		Commands: []*cli.Command{
			{Name: "init", Summary: "create a release repository with new keys", Run: r.init},
			{Name: "add", Args: "FILE", ArgsDoc: "the package FILE", Summary: "sign a package file into the repository",
				Flags: r.addFlags, Run: r.add},
			{Name: "publish", Summary: "copy the repository's metadata and packages to a blob container or folder",
				Flags: r.publishFlags, Run: r.publish},
			{Name: "list", Summary: "list the signed packages", Run: r.list},
		},
	}
}

// releasesCmd holds the flags of berth-control releases; its methods are
// the subcommands.
type releasesCmd struct {
	repo string
	pkg  tufrepo.Package
	to   string
	cred azstore.Credential
}

func (r *releasesCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&r.repo, "repo", "", "the release repository `DIR` (keys and metadata); required")
}

func (r *releasesCmd) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&r.pkg.Kind, "kind", "", "engine or agent")
	fs.StringVar(&r.pkg.Flavor, "flavor", "", "docker or containerd (engines)")
	fs.StringVar(&r.pkg.Version, "version", "", "the package's version")
	fs.StringVar(&r.pkg.OS, "os", "", "linux or windows")
	fs.StringVar(&r.pkg.Arch, "arch", "amd64", "amd64")
	fs.StringVar(&r.pkg.Channel, "channel", "stable", "release channel")
}

func (r *releasesCmd) publishFlags(fs *flag.FlagSet) {
	fs.StringVar(&r.to, "to", "", "an Azure Blob container `URL` or a folder; required")
	fs.StringVar(&r.cred.Auth, "auth", "managed-identity", "managed-identity, shared-key, sas or none")
	fs.StringVar(&r.cred.ClientID, "client-id", "", "user-assigned managed identity client id")
	fs.StringVar(&r.cred.KeyFile, "key-file", "", "file with the storage account key (else AZURE_STORAGE_KEY)")
	fs.StringVar(&r.cred.SASFile, "sas-file", "", "file with a SAS token (else AZURE_STORAGE_SAS_TOKEN)")
}

// tufOptions are the tufrepo options of every releases subcommand: it
// logs through the invocation's logger.
func tufOptions(in *cli.Invocation) []tufrepo.Option {
	return []tufrepo.Option{tufrepo.WithLogger(in.Log)}
}

// init is berth-control releases init.
func (r *releasesCmd) init(_ context.Context, in *cli.Invocation) error {
	if err := needRepo(r.repo); err != nil {
		return err
	}
	if err := tufrepo.Init(r.repo, tufOptions(in)...); err != nil {
		return err
	}
	root := filepath.Join(r.repo, "metadata", "root.json")
	return in.Print(map[string]string{"repo": r.repo, "root": root}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "release repository created in %s; agents trust %s\n", r.repo, root)
		return err
	})
}

// add is berth-control releases add FILE.
func (r *releasesCmd) add(_ context.Context, in *cli.Invocation) error {
	if err := needRepo(r.repo); err != nil {
		return err
	}
	if err := r.pkg.Validate(); err != nil {
		return cli.Usage(err)
	}
	t, err := tufrepo.Add(r.repo, r.pkg, in.Args[0], tufOptions(in)...)
	if err != nil {
		return notRepoIsUsage(err)
	}
	return in.Print(t, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "signed %s (%d bytes, sha256 %s)\n", t.Path, t.Length, t.SHA256)
		return err
	})
}

// publish is berth-control releases publish.
func (r *releasesCmd) publish(ctx context.Context, in *cli.Invocation) error {
	if err := needRepo(r.repo); err != nil {
		return err
	}
	if r.to == "" {
		return cli.Usagef("--to URL|DIR is required")
	}
	if err := tufrepo.Publish(ctx, r.repo, r.to, r.cred, tufOptions(in)...); err != nil {
		return notRepoIsUsage(err)
	}
	dest := azstore.Redact(r.to)
	return in.Print(map[string]string{"repo": r.repo, "to": dest}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "published %s to %s\n", r.repo, dest)
		return err
	})
}

// list is berth-control releases list.
func (r *releasesCmd) list(_ context.Context, in *cli.Invocation) error {
	if err := needRepo(r.repo); err != nil {
		return err
	}
	ts, err := tufrepo.List(r.repo)
	if err != nil {
		return notRepoIsUsage(err)
	}
	return in.Print(ts, func(w io.Writer) error { return writeTargets(w, ts) })
}

// notRepoIsUsage makes a --repo that holds no release repository a usage
// error (exit 2), like a missing config file; other errors are failures.
func notRepoIsUsage(err error) error {
	if errors.Is(err, tufrepo.ErrNotRepository) {
		return cli.Usage(err)
	}
	return err
}

func needRepo(repo string) error {
	if repo == "" {
		return cli.Usagef("--repo DIR is required")
	}
	return nil
}

func writeTargets(w io.Writer, ts []tufrepo.Target) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tFLAVOR\tVERSION\tOS/ARCH\tCHANNEL\tBYTES\tPATH")
	for _, t := range ts {
		p := t.Package
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%d\t%s\n", p.Kind, p.Flavor, p.Version, p.OS, p.Arch, p.Channel, t.Length, t.Path)
	}
	return tw.Flush()
}

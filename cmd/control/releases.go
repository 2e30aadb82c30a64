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
	var repo string
	opts := func(in *cli.Invocation) []tufrepo.Option { return []tufrepo.Option{tufrepo.WithLogger(in.Log)} }
	var pkg tufrepo.Package
	var to string
	var cred azstore.Credential
	return &cli.Command{
		Name:    "releases",
		Summary: "sign and publish engine and agent packages (TUF metadata)",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&repo, "repo", "", "the release repository `DIR` (keys and metadata); required")
		},
		Commands: []*cli.Command{
			{Name: "init", Summary: "create a release repository with new keys",
				Run: func(_ context.Context, in *cli.Invocation) error {
					if err := needRepo(repo); err != nil {
						return err
					}
					if err := tufrepo.Init(repo, opts(in)...); err != nil {
						return err
					}
					root := filepath.Join(repo, "metadata", "root.json")
					return in.Print(map[string]string{"repo": repo, "root": root}, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "release repository created in %s; agents trust %s\n", repo, root)
						return err
					})
				}},
			{Name: "add", Args: "FILE", ArgsDoc: "the package FILE", Summary: "sign a package file into the repository",
				Flags: func(fs *flag.FlagSet) {
					fs.StringVar(&pkg.Kind, "kind", "", "engine or agent")
					fs.StringVar(&pkg.Flavor, "flavor", "", "docker or containerd (engines)")
					fs.StringVar(&pkg.Version, "version", "", "the package's version")
					fs.StringVar(&pkg.OS, "os", "", "linux or windows")
					fs.StringVar(&pkg.Arch, "arch", "amd64", "amd64")
					fs.StringVar(&pkg.Channel, "channel", "stable", "release channel")
				},
				Run: func(_ context.Context, in *cli.Invocation) error {
					if err := needRepo(repo); err != nil {
						return err
					}
					if err := pkg.Validate(); err != nil {
						return cli.Usage(err)
					}
					t, err := tufrepo.Add(repo, pkg, in.Args[0], opts(in)...)
					if err != nil {
						return notRepoIsUsage(err)
					}
					return in.Print(t, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "signed %s (%d bytes, sha256 %s)\n", t.Path, t.Length, t.SHA256)
						return err
					})
				}},
			{Name: "publish", Summary: "copy the repository's metadata and packages to a blob container or folder",
				Flags: func(fs *flag.FlagSet) {
					fs.StringVar(&to, "to", "", "an Azure Blob container `URL` or a folder; required")
					fs.StringVar(&cred.Auth, "auth", "managed-identity", "managed-identity, shared-key, sas or none")
					fs.StringVar(&cred.ClientID, "client-id", "", "user-assigned managed identity client id")
					fs.StringVar(&cred.KeyFile, "key-file", "", "file with the storage account key (else AZURE_STORAGE_KEY)")
					fs.StringVar(&cred.SASFile, "sas-file", "", "file with a SAS token (else AZURE_STORAGE_SAS_TOKEN)")
				},
				Run: func(ctx context.Context, in *cli.Invocation) error {
					if err := needRepo(repo); err != nil {
						return err
					}
					if to == "" {
						return cli.Usagef("--to URL|DIR is required")
					}
					if err := tufrepo.Publish(ctx, repo, to, cred, opts(in)...); err != nil {
						return notRepoIsUsage(err)
					}
					dest := azstore.Redact(to)
					return in.Print(map[string]string{"repo": repo, "to": dest}, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "published %s to %s\n", repo, dest)
						return err
					})
				}},
			{Name: "list", Summary: "list the signed packages",
				Run: func(_ context.Context, in *cli.Invocation) error {
					if err := needRepo(repo); err != nil {
						return err
					}
					ts, err := tufrepo.List(repo)
					if err != nil {
						return notRepoIsUsage(err)
					}
					return in.Print(ts, func(w io.Writer) error { return writeTargets(w, ts) })
				}},
		},
	}
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

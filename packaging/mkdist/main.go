// Command mkdist is `make package` (see packaging/mkdist/distbuild): it
// builds the release files into -out and prints one line per file. This
// file only parses flags and the environment.
//
//	go run ./packaging/mkdist -version v1.2.3 -commit abc1234 -out dist
//
// SOURCE_DATE_EPOCH sets every time; SIGN_CERT, SIGN_KEY (PEM) and
// SIGN_TIMESTAMP_URL sign the Windows files; RELEASE_REPO signs the agent
// packages into that TUF repository. Flags of the same names win.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/berthhq/berth/packaging/mkdist/distbuild"
)

func main() {
	fs := flag.NewFlagSet("mkdist", flag.ContinueOnError)
	o := distbuild.Options{Root: "."}
	fs.StringVar(&o.Out, "out", "dist", "the folder to write the packages into")
	fs.StringVar(&o.Version, "version", "", "the build's version: git describe --tags --always --dirty, or X.Y.Z")
	fs.StringVar(&o.Commit, "commit", "unknown", "the short commit stamped into the binaries")
	fs.StringVar(&o.SignCert, "sign-cert", os.Getenv("SIGN_CERT"), "PEM code-signing certificate (chain, leaf first)")
	fs.StringVar(&o.SignKey, "sign-key", os.Getenv("SIGN_KEY"), "PEM private key of -sign-cert (RSA)")
	fs.StringVar(&o.TimestampURL, "sign-timestamp-url", os.Getenv("SIGN_TIMESTAMP_URL"), "RFC 3161 timestamp server (makes signatures non-reproducible)")
	fs.StringVar(&o.ReleaseRepo, "release-repo", os.Getenv("RELEASE_REPO"), "TUF repository folder to sign the agent packages into")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "seconds since 1970: every time in the packages")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	sec, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil || o.Version == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkdist -version V [-commit C] [-out DIR]; SOURCE_DATE_EPOCH (seconds) is required")
		os.Exit(2)
	}
	o.SourceDate = time.Unix(sec, 0).UTC()
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o.Progress = func(line string) { fmt.Println(line) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	if _, err := distbuild.Build(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "mkdist:", err)
		os.Exit(1)
	}
	fmt.Printf("make package: done in %.1fs into %s\n", time.Since(start).Seconds(), o.Out)
}

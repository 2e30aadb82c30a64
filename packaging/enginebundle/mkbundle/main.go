// Command mkbundle builds an engine package in the layout of Docker's static
// release archives from the Docker Engine binaries installed on this machine
// (Debian's docker.io), for the demo and for release pipelines. It prints
// the package's path. This file only parses flags; see package enginebundle.
//
//	go run ./packaging/enginebundle/mkbundle -out docker-24.0.7.tgz -marker 24.0.7 [-broken]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/berthhq/berth/packaging/enginebundle"
)

func main() {
	fs := flag.NewFlagSet("mkbundle", flag.ContinueOnError)
	out := fs.String("out", "", "the package file to write (docker-<version>.tgz)")
	marker := fs.String("marker", "", "written as docker/BERTH-RELEASE so that packages of the same binaries differ (usually the version)")
	broken := fs.Bool("broken", false, "replace dockerd with a program that exits at once, to show a failed upgrade")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkbundle -out FILE [-marker STR] [-broken]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := enginebundle.BuildDocker(ctx, *out, enginebundle.Options{Marker: *marker, Broken: *broken}); err != nil {
		fmt.Fprintf(os.Stderr, "mkbundle: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(*out)
}

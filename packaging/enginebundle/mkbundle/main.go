// Command mkbundle builds an engine package in the layout of the engine's
// own release archives from the binaries installed on this machine
// (Debian's docker.io, or containerd and runc), for the demo and for
// release pipelines. It prints the package's path. This file only parses
// flags; see package enginebundle.
//
//	go run ./packaging/enginebundle/mkbundle -out docker-24.0.7.tgz -marker 24.0.7 [-broken]
//	go run ./packaging/enginebundle/mkbundle -flavor containerd -out containerd-1.6.20-linux-amd64.tar.gz -marker 1.6.20
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
	flavor := fs.String("flavor", "docker", "docker or containerd")
	out := fs.String("out", "", "the package file to write (docker-<version>.tgz, containerd-<version>-linux-<arch>.tar.gz)")
	marker := fs.String("marker", "", "written as BERTH-RELEASE beside the binaries so that packages of the same binaries differ (usually the version)")
	broken := fs.Bool("broken", false, "replace the daemon (dockerd, containerd) with a program that exits at once, to show a failed upgrade")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkbundle [-flavor docker|containerd] -out FILE [-marker STR] [-broken]")
		os.Exit(2)
	}
	build := enginebundle.BuildDocker
	switch *flavor {
	case "docker":
	case "containerd":
		build = enginebundle.BuildContainerd
	default:
		fmt.Fprintf(os.Stderr, "mkbundle: -flavor %q: want docker or containerd\n", *flavor)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := build(ctx, *out, enginebundle.Options{Marker: *marker, Broken: *broken}); err != nil {
		fmt.Fprintf(os.Stderr, "mkbundle: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(*out)
}

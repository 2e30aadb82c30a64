// Command mkmsi builds the agent's MSI (see package msi) and prints its
// path; the Windows workflow runs it, make package calls the package. This
// file only parses flags.
//
//	SOURCE_DATE_EPOCH=1764547200 go run ./packaging/msi/mkmsi -version 1.2.3 \
//	    -product-version 1.2.3 -exe bin/windows-amd64/berth-agent.exe -out dist
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/berthhq/berth/packaging/msi"
)

func main() {
	fs := flag.NewFlagSet("mkmsi", flag.ContinueOnError)
	version := fs.String("version", "", "the agent's version, as file names show it")
	productVersion := fs.String("product-version", "", "the MSI ProductVersion, N.N.N[.N] (default: -version)")
	exe := fs.String("exe", "", "berth-agent.exe (GOOS=windows GOARCH=amd64)")
	out := fs.String("out", "dist", "the folder to write berth-agent-<version>-x64.msi into")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *version == "" || *exe == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkmsi -version V [-product-version N.N.N] -exe FILE [-out DIR]  (SOURCE_DATE_EPOCH sets every time inside)")
		os.Exit(2)
	}
	if *productVersion == "" {
		*productVersion = *version
	}
	date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		sec, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mkmsi: SOURCE_DATE_EPOCH %q: want seconds since 1970\n", e)
			os.Exit(2)
		}
		date = time.Unix(sec, 0).UTC()
	}
	path := filepath.Join(*out, "berth-agent-"+*version+"-"+msi.Arch+".msi")
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mkmsi:", err)
		os.Exit(1)
	}
	err := msi.Build(context.Background(), msi.Options{
		Version: *version, ProductVersion: *productVersion, AgentExe: *exe, Out: path, SourceDate: date,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkmsi:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

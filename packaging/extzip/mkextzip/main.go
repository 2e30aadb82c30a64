// Command mkextzip builds one Azure VM extension zip of berth-agent (see
// package extzip); `make package` runs it for linux and windows. It prints
// the zip's path. This file only parses flags.
//
//	go run ./packaging/extzip/mkextzip -os linux -version 1.2.3 \
//	    -binary bin/berth-agent -manifest packaging/HandlerManifest.json -out dist
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/berthhq/berth/internal/atomicfile"
	"github.com/berthhq/berth/packaging/extzip"
)

func main() {
	fs := flag.NewFlagSet("mkextzip", flag.ContinueOnError)
	goos := fs.String("os", "", "linux or windows")
	version := fs.String("version", "", "the agent's version, as `berth-agent version` prints it (the Makefile's VERSION)")
	binary := fs.String("binary", "", "the agent binary built for -os")
	manifest := fs.String("manifest", "", "the HandlerManifest.json for -os")
	out := fs.String("out", "dist", "the folder to write berth-extension-<version>-<os>.zip into")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *goos == "" || *version == "" || *binary == "" || *manifest == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkextzip -os linux|windows -version V -binary FILE -manifest FILE [-out DIR]  (SOURCE_DATE_EPOCH sets the entries' time)")
		os.Exit(2)
	}
	path, err := build(*goos, *version, *binary, *manifest, *out, os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkextzip:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

func build(goos, version, binary, manifestPath, outDir, epoch string) (string, error) {
	mtime := time.Unix(0, 0)
	if epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return "", fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970", epoch)
		}
		mtime = time.Unix(sec, 0)
	}
	manifest, err := os.ReadFile(manifestPath)
	if err != nil {
		return "", err
	}
	bin, err := os.Open(binary)
	if err != nil {
		return "", fmt.Errorf("%w (make build / make build-windows builds it)", err)
	}
	defer bin.Close()
	var buf bytes.Buffer
	if err := extzip.Build(&buf, extzip.Options{OS: goos, Manifest: manifest, Binary: bin, ModTime: mtime}); err != nil {
		return "", err
	}
	name, err := extzip.FileName(version, goos)
	if err != nil {
		return "", err
	}
	path := filepath.Join(outDir, name)
	return path, atomicfile.Write(path, buf.Bytes(), 0o644)
}

// Package enginebundle builds engine packages in the layout of Docker's
// static release archives (docker-<version>.tgz holding docker/dockerd,
// docker/containerd, …) from engine binaries already on a machine. Release
// pipelines, tests, benchmarks and the demo use it to make real packages
// from Debian's docker.io binaries.
package enginebundle

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// DockerBinaries are the files of Docker's static Linux archive, in order.
var DockerBinaries = []string{
	"containerd", "containerd-shim-runc-v2", "ctr", "docker", "docker-init",
	"docker-proxy", "dockerd", "runc",
}

// Options say what goes into a package.
type Options struct {
	// Lookup finds a binary by name; default: exec.LookPath with /usr/sbin
	// and /usr/bin searched too.
	Lookup func(name string) (string, error)
	// Broken replaces dockerd with a program that exits at once with an
	// error, for tests and demos of a failed upgrade.
	Broken bool
	// Marker, when set, is written as docker/BERTH-RELEASE so that two
	// packages of the same binaries differ.
	Marker string
}

// BuildDocker writes a docker-<version>.tgz style package to out.
func BuildDocker(ctx context.Context, out string, o Options) error {
	lookup := o.Lookup
	if lookup == nil {
		lookup = lookPath
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("build docker package: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	mtime := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "docker/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
		return err
	}
	for _, name := range DockerBinaries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == "dockerd" && o.Broken {
			script := "#!/bin/sh\necho 'dockerd: this build is broken on purpose (berth test package)' >&2\nexit 1\n"
			if err := writeEntry(tw, "docker/dockerd", []byte(script), mtime); err != nil {
				return err
			}
			continue
		}
		src, err := lookup(name)
		if err != nil {
			return fmt.Errorf("build docker package: find %s: %w (install Debian's docker.io)", name, err)
		}
		if err := copyEntry(tw, "docker/"+name, src, mtime); err != nil {
			return fmt.Errorf("build docker package: %w", err)
		}
	}
	if o.Marker != "" {
		if err := writeEntry(tw, "docker/BERTH-RELEASE", []byte(o.Marker+"\n"), mtime); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Close()
}

func writeEntry(tw *tar.Writer, name string, data []byte, mtime time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), ModTime: mtime}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func copyEntry(tw *tar.Writer, name, src string, mtime time.Time) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: fi.Size(), ModTime: mtime}); err != nil {
		return err
	}
	_, err = io.Copy(tw, in)
	return err
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/usr/libexec/docker/cli-plugins"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH, /usr/sbin or /usr/bin", name)
}

// Package enginebundle builds engine packages in the layout of the engines'
// own release archives (docker-<version>.tgz holding docker/dockerd,
// docker/containerd, …; containerd's archive holding bin/containerd,
// bin/ctr, …) from engine binaries already on a machine. Release pipelines,
// tests, benchmarks and the demo use it to make real packages from Debian's
// docker.io, containerd and runc binaries.
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
	// Broken replaces the daemon (dockerd, containerd) with a program that
	// exits at once with an error, for tests and demos of a failed upgrade.
	Broken bool
	// Marker, when set, is written as BERTH-RELEASE beside the binaries
	// (docker/, bin/) so that two packages of the same binaries differ.
	Marker string
}

// ContainerdBinaries are the files of a containerd package, under bin/ as
// in containerd's own release archive; runc, which that archive leaves to
// the host, is packaged too, so that a version brings its own runtime.
var ContainerdBinaries = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc"}

// BuildDocker writes a docker-<version>.tgz style package to out.
func BuildDocker(ctx context.Context, out string, o Options) error {
	return build(ctx, out, o, layout{
		flavor:   "docker",
		dir:      "docker/",
		binaries: DockerBinaries,
		daemon:   "dockerd",
		hint:     "install Debian's docker.io",
	})
}

// BuildContainerd writes a package in the layout of containerd's release
// archive (containerd-<version>-linux-<arch>.tar.gz: bin/containerd,
// bin/containerd-shim-runc-v2, bin/ctr, plus bin/runc) to out.
func BuildContainerd(ctx context.Context, out string, o Options) error {
	return build(ctx, out, o, layout{
		flavor:   "containerd",
		dir:      "bin/",
		binaries: ContainerdBinaries,
		daemon:   "containerd",
		hint:     "install Debian's containerd and runc",
	})
}

// layout is where a flavor's package puts its files.
type layout struct {
	flavor   string
	dir      string // the folder every binary is in, with a trailing slash
	binaries []string
	daemon   string // the binary that Broken replaces
	hint     string // what to install when a binary is missing
}

func build(ctx context.Context, out string, o Options, l layout) error {
	lookup := o.Lookup
	if lookup == nil {
		lookup = lookPath
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("build %s package: %w", l.flavor, err)
	}
	defer f.Close()
	gz, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	mtime := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: l.dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
		return err
	}
	for _, name := range l.binaries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == l.daemon && o.Broken {
			script := "#!/bin/sh\necho '" + l.daemon + ": this build is broken on purpose (berth test package)' >&2\nexit 1\n"
			if err := writeEntry(tw, l.dir+name, []byte(script), mtime); err != nil {
				return err
			}
			continue
		}
		src, err := lookup(name)
		if err != nil {
			return fmt.Errorf("build %s package: find %s: %w (%s)", l.flavor, name, err, l.hint)
		}
		if err := copyEntry(tw, l.dir+name, src, mtime); err != nil {
			return fmt.Errorf("build %s package: %w", l.flavor, err)
		}
	}
	if o.Marker != "" {
		if err := writeEntry(tw, l.dir+"BERTH-RELEASE", []byte(o.Marker+"\n"), mtime); err != nil {
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

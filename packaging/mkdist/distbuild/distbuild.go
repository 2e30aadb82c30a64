// Package distbuild is `make package`: it cross-builds berth-agent and
// berth-control for linux/amd64 and windows/amd64, signs the Windows
// executables, writes the agent packages and the VM extension zips into
// dist/, and signs the agent packages into a TUF release repository when
// one is given. Every output is reproducible: the binaries are built with
// -trimpath, -buildvcs=false and an empty build id; every time inside an
// archive and the signing time are the build's SOURCE_DATE_EPOCH.
package distbuild

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/berthhq/berth/internal/atomicfile"
	"github.com/berthhq/berth/packaging/agentpkg"
	"github.com/berthhq/berth/packaging/authenticode"
	"github.com/berthhq/berth/packaging/extzip"
	"github.com/berthhq/berth/packaging/pkgversion"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// Options say what to build where.
type Options struct {
	// Root is the module's folder; Out the folder the packages go to.
	Root, Out string
	// Version is the build's VERSION (git describe, or given); Commit the
	// short commit stamped into the binaries.
	Version, Commit string
	// SourceDate is SOURCE_DATE_EPOCH: the binaries' build date, every
	// time inside a package, and the signing time without a timestamp.
	SourceDate time.Time
	// SignCert and SignKey (PEM) sign the Windows executables and the
	// MSI; empty builds them unsigned, with a warning.
	SignCert, SignKey string
	// TimestampURL is an RFC 3161 server; a timestamp is never
	// reproducible.
	TimestampURL string
	// ReleaseRepo is a TUF repository folder (berth-control releases
	// init) to sign the agent packages into; empty for none.
	ReleaseRepo string
	// Log receives one line per artifact (and warnings).
	Log *slog.Logger
	// Progress receives one human line per artifact; nil for none.
	Progress func(line string)
}

// Platforms are the os/arch pairs make package builds.
var Platforms = []struct{ OS, Arch string }{{"linux", "amd64"}, {"windows", "amd64"}}

// Commands are the programs built for each platform.
var Commands = []struct{ Name, Pkg string }{{"berth-agent", "./cmd/agent"}, {"berth-control", "./cmd/control"}}

// Artifact is one file written to Out.
type Artifact struct {
	Path string
	Size int64
	Took time.Duration
}

type builder struct {
	o      Options
	v      pkgversion.Versions
	work   string
	out    []Artifact
	agents map[string]string // os → the (signed) agent binary in Out
}

// Build builds everything into o.Out and returns what it wrote.
func Build(ctx context.Context, o Options) ([]Artifact, error) {
	v, err := pkgversion.Parse(o.Version)
	if err != nil {
		return nil, fmt.Errorf("make package: %w", err)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if (o.SignCert == "") != (o.SignKey == "") {
		return nil, fmt.Errorf("make package: set both SIGN_CERT and SIGN_KEY (PEM), or neither")
	}
	if o.SignCert == "" {
		o.Log.Warn("SIGN_CERT and SIGN_KEY are not set: the Windows executables and the MSI are NOT signed; Windows security teams refuse unsigned programs")
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("make package: %w", err)
	}
	work, err := os.MkdirTemp("", "berth-package-")
	if err != nil {
		return nil, fmt.Errorf("make package: %w", err)
	}
	defer os.RemoveAll(work)
	b := &builder{o: o, v: v, work: work, agents: map[string]string{}}
	for _, step := range []func(context.Context) error{b.binaries, b.agentPackages, b.extensionZips, b.windowsInstaller, b.debianPackage, b.release} {
		if err := step(ctx); err != nil {
			return b.out, fmt.Errorf("make package %s: %w", v.Name, err)
		}
	}
	return b.out, nil
}

// wrote records a file written to Out since start.
func (b *builder) wrote(path string, start time.Time) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	a := Artifact{Path: path, Size: fi.Size(), Took: time.Since(start).Round(10 * time.Millisecond)}
	b.out = append(b.out, a)
	b.o.Log.Info("built", "file", path, "bytes", a.Size, "took", a.Took)
	if b.o.Progress != nil {
		b.o.Progress(fmt.Sprintf("%-60s %8.1f MB %6.1fs", path, float64(a.Size)/(1<<20), a.Took.Seconds()))
	}
	return nil
}

func exeSuffix(goos string) string {
	if goos == "windows" {
		return ".exe"
	}
	return ""
}

// binaries cross-builds every command and signs the Windows ones.
func (b *builder) binaries(ctx context.Context) error {
	for _, p := range Platforms {
		for _, c := range Commands {
			start := time.Now()
			name := fmt.Sprintf("%s-%s-%s-%s%s", c.Name, b.v.Name, p.OS, p.Arch, exeSuffix(p.OS))
			dst := filepath.Join(b.o.Out, name)
			built := dst
			if p.OS == "windows" && b.o.SignCert != "" {
				built = filepath.Join(b.work, name)
			}
			if err := b.goBuild(ctx, p.OS, p.Arch, c.Pkg, built); err != nil {
				return err
			}
			if built != dst {
				if err := b.sign(ctx, built, dst, description(c.Name)); err != nil {
					return err
				}
			}
			if c.Name == "berth-agent" {
				b.agents[p.OS] = dst
			}
			if err := b.wrote(dst, start); err != nil {
				return err
			}
		}
	}
	return nil
}

func description(cmd string) string {
	if cmd == "berth-agent" {
		return "Berth Agent"
	}
	return "Berth Control"
}

func (b *builder) goBuild(ctx context.Context, goos, goarch, pkg, out string) error {
	pkgPath := "github.com/berthhq/berth/internal/buildinfo"
	ldflags := fmt.Sprintf("-s -w -buildid= -X %s.Version=%s -X %s.Commit=%s -X %s.Date=%s",
		pkgPath, b.v.Name, pkgPath, b.o.Commit, pkgPath, b.o.SourceDate.UTC().Format(time.RFC3339))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags="+ldflags, "-o", out, pkg)
	cmd.Dir = b.o.Root
	// Everything `go version -m` records is pinned here (anchors §6).
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOAMD64=v1", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", pkg, goos, goarch, err, out)
	}
	return nil
}

func (b *builder) sign(ctx context.Context, in, out, what string) error {
	return authenticode.Sign(ctx, authenticode.SignOptions{
		In: in, Out: out, CertFile: b.o.SignCert, KeyFile: b.o.SignKey,
		Description: what, TimestampURL: b.o.TimestampURL, Time: b.o.SourceDate,
	})
}

// agentPackages writes berth-agent-<v>-<os>-<arch>.tar.gz|.zip.
func (b *builder) agentPackages(context.Context) error {
	for _, p := range Platforms {
		start := time.Now()
		bin, err := os.ReadFile(b.agents[p.OS])
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := agentpkg.Write(&buf, p.OS, bin, b.o.SourceDate); err != nil {
			return err
		}
		if err := b.writeOut(agentpkg.FileName(b.v.Name, p.OS, p.Arch), buf.Bytes(), start); err != nil {
			return err
		}
	}
	return nil
}

// writeOut writes a package built in memory to Out.
func (b *builder) writeOut(name string, data []byte, start time.Time) error {
	dst := filepath.Join(b.o.Out, name)
	if err := atomicfile.Write(dst, data, 0o644); err != nil {
		return err
	}
	return b.wrote(dst, start)
}

// extensionZips writes berth-extension-<v>-<os>.zip.
func (b *builder) extensionZips(context.Context) error {
	for _, p := range Platforms {
		start := time.Now()
		manifest := filepath.Join(b.o.Root, "packaging", "HandlerManifest.json")
		if p.OS == "windows" {
			manifest = filepath.Join(b.o.Root, "packaging", "HandlerManifest.windows.json")
		}
		m, err := os.ReadFile(manifest)
		if err != nil {
			return err
		}
		bin, err := os.Open(b.agents[p.OS])
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		err = extzip.Build(&buf, extzip.Options{OS: p.OS, Manifest: m, Binary: bin, ModTime: b.o.SourceDate})
		bin.Close()
		if err != nil {
			return err
		}
		name, err := extzip.FileName(b.v.Name, p.OS)
		if err != nil {
			return err
		}
		if err := b.writeOut(name, buf.Bytes(), start); err != nil {
			return err
		}
	}
	return nil
}

// release signs the agent packages into the release repository. The
// repository must exist: creating one makes its keys, which an operator
// does once, on purpose (berth-control releases init), not as a side
// effect of a build.
func (b *builder) release(context.Context) error {
	if b.o.ReleaseRepo == "" {
		return nil
	}
	for _, p := range Platforms {
		file := filepath.Join(b.o.Out, agentpkg.FileName(b.v.Name, p.OS, p.Arch))
		t, err := tufrepo.Add(b.o.ReleaseRepo, tufrepo.Package{Kind: tufrepo.KindAgent, Version: b.v.Name, OS: p.OS, Arch: p.Arch}, file,
			tufrepo.WithLogger(b.o.Log))
		if err != nil {
			return fmt.Errorf("RELEASE_REPO=%s: %w", b.o.ReleaseRepo, err)
		}
		if b.o.Progress != nil {
			b.o.Progress(fmt.Sprintf("signed into %s: %s", b.o.ReleaseRepo, t.Path))
		}
	}
	return nil
}

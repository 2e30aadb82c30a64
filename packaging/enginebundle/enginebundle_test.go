package enginebundle

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestBuildDockerLayout(t *testing.T) {
	dir := t.TempDir()
	// Small stand-ins keep this a test of the layout, not of Debian's binaries.
	lookup := func(name string) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, []byte("binary "+name), 0o755)
	}
	out := filepath.Join(dir, "docker-1.0.0.tgz")
	if err := BuildDocker(context.Background(), out, Options{Lookup: lookup, Broken: true, Marker: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	var dockerd string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "docker/dockerd" {
			b, _ := io.ReadAll(tr)
			dockerd = string(b)
		}
	}
	want := []string{"docker/"}
	for _, b := range DockerBinaries {
		want = append(want, "docker/"+b)
	}
	want = append(want, "docker/BERTH-RELEASE")
	if !slices.Equal(names, want) {
		t.Errorf("entries = %v\nwant %v", names, want)
	}
	if dockerd == "binary dockerd" || dockerd == "" {
		t.Errorf("Broken package's dockerd = %q; want the failing script", dockerd)
	}
}

func TestBuildContainerdLayout(t *testing.T) {
	dir := t.TempDir()
	lookup := func(name string) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, []byte("binary "+name), 0o755)
	}
	out := filepath.Join(dir, "containerd-1.0.0-linux-amd64.tar.gz")
	if err := BuildContainerd(context.Background(), out, Options{Lookup: lookup, Broken: true, Marker: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	var daemon string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "bin/containerd" {
			b, _ := io.ReadAll(tr)
			daemon = string(b)
		}
	}
	want := []string{"bin/", "bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr", "bin/runc", "bin/BERTH-RELEASE"}
	if !slices.Equal(names, want) {
		t.Errorf("entries = %v\nwant %v", names, want)
	}
	if daemon == "binary containerd" || daemon == "" {
		t.Errorf("Broken package's containerd = %q; want the failing script", daemon)
	}
}

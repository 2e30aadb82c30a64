// Package enginebundletest builds engine packages for tests from the
// machine's engine binaries, skipping the test (failing it under CI=true)
// when a binary is missing. It wraps enginebundle for tests, so that
// internal/testenv need not import packaging.
package enginebundletest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/packaging/enginebundle"
)

// Docker builds an engine package of version v from the machine's
// docker.io binaries into dir and returns its path. A broken package has a
// dockerd that exits at once.
func Docker(t testing.TB, dir, v string, broken bool) string {
	t.Helper()
	testenv.NeedBinary(t, "dockerd")
	p := filepath.Join(dir, "docker-"+v+".tgz")
	if err := enginebundle.BuildDocker(context.Background(), p, enginebundle.Options{Marker: v, Broken: broken}); err != nil {
		t.Fatalf("build bundle %s: %v", v, err)
	}
	return p
}

// Containerd builds a containerd package of version v from the machine's
// containerd, containerd-shim-runc-v2, ctr and runc into dir and returns
// its path. A broken package has a containerd that exits at once.
func Containerd(t testing.TB, dir, v string, broken bool) string {
	t.Helper()
	testenv.NeedBinary(t, "containerd")
	testenv.NeedBinary(t, "containerd-shim-runc-v2")
	testenv.NeedBinary(t, "runc")
	p := filepath.Join(dir, "containerd-"+v+"-linux-amd64.tar.gz")
	if err := enginebundle.BuildContainerd(context.Background(), p, enginebundle.Options{Marker: v, Broken: broken}); err != nil {
		t.Fatalf("build bundle %s: %v", v, err)
	}
	return p
}

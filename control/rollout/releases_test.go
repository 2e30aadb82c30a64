package rollout_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// signedRepo makes a release repository with an engine and an agent
// package signed for linux/amd64.
func signedRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := tufrepo.Init(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []tufrepo.Package{
		{Kind: tufrepo.KindEngine, Flavor: tufrepo.FlavorDocker, Version: "2.0.0", OS: "linux", Arch: "amd64"},
		{Kind: tufrepo.KindAgent, Version: "1.1.0", OS: "linux", Arch: "amd64"},
	} {
		f := filepath.Join(t.TempDir(), "pkg.tgz")
		if err := os.WriteFile(f, []byte(p.Kind+p.Version), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := tufrepo.Add(dir, p, f); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestOpenReleases(t *testing.T) {
	ctx := context.Background()
	repo := signedRepo(t)
	rel, err := rollout.OpenReleases(ctx, repo, filepath.Join(repo, "metadata", "root.json"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind, flavor, version, os string
		signed                    bool
	}{
		{"engine", "docker", "2.0.0", "linux", true},
		{"agent", "", "1.1.0", "linux", true},
		{"engine", "docker", "2.0.0", "windows", false},
		{"engine", "containerd", "2.0.0", "linux", false},
		{"engine", "docker", "2.0.1", "linux", false},
		{"agent", "", "2.0.0", "linux", false},
	} {
		err := rel.Signed(ctx, c.kind, c.flavor, c.version, c.os, "amd64")
		if (err == nil) != c.signed {
			t.Errorf("Signed(%s %s %s %s): %v, want signed %v", c.kind, c.flavor, c.version, c.os, err, c.signed)
		}
	}
	// A root that is not the repository's: refused at open, not at the
	// first rollout.
	other := filepath.Join(t.TempDir(), "other")
	if err := tufrepo.Init(other); err != nil {
		t.Fatal(err)
	}
	if _, err := rollout.OpenReleases(ctx, repo, filepath.Join(other, "metadata", "root.json"), t.TempDir(), nil); err == nil {
		t.Error("OpenReleases with a foreign root succeeded")
	}
	if _, err := rollout.OpenReleases(ctx, repo, filepath.Join(repo, "nope.json"), t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("OpenReleases without a root file: %v", err)
	}
	// The service refuses what the metadata does not sign.
	f := newFleet(t, "sqlite://"+filepath.Join(t.TempDir(), "c.db"), rel)
	f.add("web", 3, web, "1.0.0")
	if _, err := f.svc.Create(ctx, "alice", engineSpec("2.0.1")); !errors.Is(err, rollout.ErrInvalid) || !strings.Contains(err.Error(), "not signed for linux/amd64") {
		t.Errorf("create of an unsigned version: %v", err)
	}
	if _, err := f.svc.Pin(ctx, "web-000", "alice", wire.Pin{Agent: "9.9.9"}); !errors.Is(err, rollout.ErrInvalid) {
		t.Errorf("pin of an unsigned agent: %v", err)
	}
	f.create(engineSpec("2.0.0"))
}

package imagecache

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/cas"
)

func TestParseImageRef(t *testing.T) {
	for _, tc := range []struct {
		in       string
		want     ImageRef
		familiar string
		bad      bool
	}{
		{in: "busybox", want: ImageRef{Registry: "docker.io", Repo: "library/busybox", Tag: "latest"}, familiar: "busybox:latest"},
		{in: "grafana/grafana:10.1", want: ImageRef{Registry: "docker.io", Repo: "grafana/grafana", Tag: "10.1"}, familiar: "grafana/grafana:10.1"},
		{in: "127.0.0.1:5000/app", want: ImageRef{Registry: "127.0.0.1:5000", Repo: "app", Tag: "latest"}, familiar: "127.0.0.1:5000/app:latest"},
		{in: "myregistry.azurecr.io/team/app:v2@" + dgst, want: ImageRef{Registry: "myregistry.azurecr.io", Repo: "team/app", Tag: "v2", Digest: cas.Digest(dgst)}},
		{in: "mcr.microsoft.com/windows/nanoserver:ltsc2022", want: ImageRef{Registry: "mcr.microsoft.com", Repo: "windows/nanoserver", Tag: "ltsc2022"}},
		{in: "docker.io/library/alpine@" + dgst, want: ImageRef{Registry: "docker.io", Repo: "library/alpine", Digest: cas.Digest(dgst)}},
		{in: "", bad: true},
		{in: "UPPER", bad: true},
		{in: "a:b:c", bad: true},
		{in: "busybox@sha256:123", bad: true},
		{in: "../etc/passwd", bad: true},
		{in: "a/:tag", bad: true},
	} {
		got, err := ParseImageRef(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseImageRef(%q) = %+v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseImageRef(%q): %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ParseImageRef(%q) (-want +got):\n%s", tc.in, d)
		}
		if tc.familiar != "" && got.Familiar() != tc.familiar {
			t.Errorf("Familiar() = %q, want %q", got.Familiar(), tc.familiar)
		}
	}
	r, _ := ParseImageRef("127.0.0.1:5000/team/app:v1")
	if got := r.ThroughCache("127.0.0.1:5050"); got != "127.0.0.1:5050/127.0.0.1_5000/team/app:v1" {
		t.Errorf("ThroughCache = %s", got)
	}
	r, _ = ParseImageRef("busybox")
	if got := r.ThroughCache("127.0.0.1:5050"); got != "127.0.0.1:5050/docker.io/library/busybox:latest" {
		t.Errorf("ThroughCache = %s", got)
	}
}

func FuzzParseImageRef(f *testing.F) {
	for _, s := range []string{"busybox", "a.b:5000/c/d:e@" + dgst, "x@y", ":::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseImageRef(s)
		if err != nil {
			return
		}
		again, err := ParseImageRef(r.String())
		if err != nil || again != r {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, r, r.String(), again, err)
		}
	})
}

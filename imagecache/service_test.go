package imagecache

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/berthhq/berth/imagecache/upstream"
)

func TestClientCacheBounded(t *testing.T) {
	cc := newClientCache(3)
	mk := func(name string) *upstream.Client {
		c, err := upstream.New(upstream.Options{Registry: name})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	listed := mk("listed.example")
	cc.put("listed.example", listed, true)
	for i := range 10 {
		name := fmt.Sprintf("r%d.example", i)
		cc.put(name, mk(name), false)
		if i == 7 {
			cc.get("r5.example") // used: stays
		}
	}
	if got := cc.len(); got != 4 {
		t.Errorf("holds %d clients, want the listed one and 3", got)
	}
	for name, want := range map[string]bool{"listed.example": true, "r9.example": true, "r8.example": true, "r5.example": true, "r7.example": false, "r0.example": false} {
		if _, ok := cc.get(name); ok != want {
			t.Errorf("get(%s) = %v, want %v", name, ok, want)
		}
	}
}

func TestNormalizeConfs(t *testing.T) {
	got := normalizeConfs(map[string]upstream.Config{
		"LocalHost:5000":    {Endpoint: "http://127.0.0.1:1"},
		"localhost:5000":    {Endpoint: "http://127.0.0.1:2"},
		"MCR.microsoft.com": {Auth: "none"},
		"index.docker.io":   {Endpoint: "https://mirror.example"},
	}, slog.New(slog.DiscardHandler))
	want := map[string]string{"localhost:5000": "http://127.0.0.1:1", "mcr.microsoft.com": "", "docker.io": "https://mirror.example"}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
	for k, ep := range want {
		if c, ok := got[k]; !ok || c.Endpoint != ep {
			t.Errorf("%s: %+v, %v; want endpoint %q", k, c, ok, ep)
		}
	}
}

func TestRegistryLabel(t *testing.T) {
	known := normalizeAll([]string{DockerHub, "MyRegistry.azurecr.io", "localhost:05000"})
	for _, tc := range []struct{ in, want string }{
		{"docker.io", "docker.io"},
		{"myregistry.azurecr.io", "myregistry.azurecr.io"},
		{"localhost:5000", "localhost:5000"},
		{"evil.example", "other"},
		{"127.0.0.1:9", "other"},
		{"", "other"},
	} {
		if got := registryLabel(known, tc.in); got != tc.want {
			t.Errorf("registryLabel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestShouldAbandon(t *testing.T) {
	for _, tc := range []struct {
		readers              int
		done, keep, sameIdle bool
		want                 bool
	}{
		{0, false, false, true, true},
		{1, false, false, true, false},  // a reader came back
		{0, true, false, true, false},   // finished: it is being committed
		{0, false, true, true, false},   // a prewarm
		{0, false, false, false, false}, // readers came and went since: a later grace decides
	} {
		if got := shouldAbandon(tc.readers, tc.done, tc.keep, tc.sameIdle); got != tc.want {
			t.Errorf("shouldAbandon(%+v) = %v, want %v", tc, got, tc.want)
		}
	}
}

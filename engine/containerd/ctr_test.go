package containerd

import (
	"path/filepath"
	"testing"
)

func TestImageNamespace(t *testing.T) {
	for _, tc := range []struct {
		settings map[string]any
		want     string
	}{
		{nil, NamespaceCRI},
		{map[string]any{"disabled_plugins": []any{"io.containerd.snapshotter.v1.btrfs"}}, NamespaceCRI},
		{map[string]any{"disabled_plugins": []any{"cri"}}, NamespaceDefault},
		{map[string]any{"disabled_plugins": []string{"io.containerd.grpc.v1.cri"}}, NamespaceDefault},
		{map[string]any{"disabled_plugins": "cri"}, NamespaceCRI}, // not a list: containerd would refuse it
	} {
		if got := ImageNamespace(tc.settings); got != tc.want {
			t.Errorf("ImageNamespace(%v) = %q, want %q", tc.settings, got, tc.want)
		}
	}
}

func TestCtrPathAndAddress(t *testing.T) {
	if got, want := CtrPath("/s/engines/containerd/1.7.0", "linux"), filepath.Join("/s/engines/containerd/1.7.0", "bin", "ctr"); got != want {
		t.Errorf("CtrPath linux = %q, want %q", got, want)
	}
	if got, want := CtrPath("v", "windows"), filepath.Join("v", "bin", "ctr.exe"); got != want {
		t.Errorf("CtrPath windows = %q, want %q", got, want)
	}
	for in, want := range map[string]string{
		"unix:///run/containerd/containerd.sock": "/run/containerd/containerd.sock",
		"npipe:////./pipe/containerd-containerd": `\\.\pipe\containerd-containerd`,
	} {
		if got, err := Address(in); err != nil || got != want {
			t.Errorf("Address(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Address("tcp://127.0.0.1:2375"); err == nil {
		t.Error("a tcp endpoint accepted")
	}
}

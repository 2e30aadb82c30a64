package flavors

import "testing"

func TestNew(t *testing.T) {
	for _, name := range Names {
		f, err := New(name, "")
		if err != nil || f.Name() != name {
			t.Errorf("New(%q) = %v, %v; want the flavor of that name", name, f, err)
		}
	}
	if _, err := New("podman", ""); err == nil {
		t.Error("New(podman) succeeded")
	}
}

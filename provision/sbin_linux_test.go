package provision

import "testing"

func TestSbinFindsSystemProgramsWithoutPath(t *testing.T) {
	t.Setenv("PATH", "/nonexistent")
	for _, name := range []string{"sh"} {
		if got := sbin(name); got == name {
			t.Errorf("sbin(%q) = %q; want the program's path found in the system folders", name, got)
		}
	}
}

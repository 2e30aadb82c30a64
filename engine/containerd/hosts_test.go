package containerd

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestRenderHostsGolden(t *testing.T) {
	for _, goos := range []string{"linux", "windows"} {
		files := RenderHosts(goos, "127.0.0.1:5050", []string{"myregistry.azurecr.io", "registry.internal:5000"},
			map[string]string{"registry.internal:5000": "http://127.0.0.1:5000"})
		var all strings.Builder
		for _, f := range files {
			all.WriteString("--- " + f.Path + "\n")
			all.Write(f.Data)
		}
		p := filepath.Join("testdata", "hosts-"+goos+".golden")
		if *update {
			if err := os.WriteFile(p, []byte(all.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if d := cmp.Diff(string(want), all.String()); d != "" {
			t.Errorf("%s (-want +got):\n%s", goos, d)
		}
	}
}

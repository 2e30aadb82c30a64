package repocheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const module = "github.com/berthhq/berth"

// imports is what go list says a package imports, its tests included.
type imports struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// upwardImports returns "pkg imports dep" for every Berth package outside
// internal/ that a package under internal/ imports, in its code or its
// tests. internal/ is the bottom of the tree: the agent, the control
// endpoint and packaging build on it, so an arrow back up would tie a
// shared helper to one of them (and invite cycles).
func upwardImports(pkgs []imports) []string {
	var bad []string
	for _, p := range pkgs {
		if !under(p.ImportPath, module+"/internal") {
			continue
		}
		deps := slices.Concat(p.Imports, p.TestImports, p.XTestImports)
		slices.Sort(deps)
		for _, d := range slices.Compact(deps) {
			if under(d, module) && !under(d, module+"/internal") {
				bad = append(bad, p.ImportPath+" imports "+d)
			}
		}
	}
	return bad
}

// under reports whether import path p is dir or lies below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

func TestUpwardImports(t *testing.T) {
	in := module + "/internal/"
	tests := []struct {
		name string
		pkgs []imports
		want []string
	}{
		{"only internal and std", []imports{{ImportPath: in + "a", Imports: []string{"fmt", in + "b"}}}, nil},
		{"code imports up", []imports{{ImportPath: in + "a", Imports: []string{module + "/engine"}}},
			[]string{in + "a imports " + module + "/engine"}},
		{"test imports up, once", []imports{{ImportPath: in + "a", TestImports: []string{module + "/cas"}, XTestImports: []string{module + "/cas"}}},
			[]string{in + "a imports " + module + "/cas"}},
		{"the module root is above", []imports{{ImportPath: in + "a", Imports: []string{module}}},
			[]string{in + "a imports " + module}},
		{"a look-alike prefix is not internal", []imports{{ImportPath: in + "a", Imports: []string{module + "/internalx"}}},
			[]string{in + "a imports " + module + "/internalx"}},
		{"packages above may import anything", []imports{{ImportPath: module + "/engine", Imports: []string{module + "/imagecache"}}}, nil},
		{"third-party paths are not Berth's", []imports{{ImportPath: in + "a", Imports: []string{module + "x/y"}}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, upwardImports(tc.pkgs)); diff != "" {
				t.Errorf("upwardImports (-want +got):\n%s", diff)
			}
		})
	}
}

// Nothing in internal/ imports a package above it, on either OS the agent
// ships for.
func TestInternalImportsNothingAbove(t *testing.T) {
	for _, goos := range []string{"linux", "windows"} {
		cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", module+"/internal/...")
		cmd.Env = append(cmd.Environ(), "GOOS="+goos, "GOARCH=amd64")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s/internal/... (%s): %v", module, goos, err)
		}
		pkgs, err := decodeImports(out)
		if err != nil {
			t.Fatalf("go list (%s): %v", goos, err)
		}
		for _, b := range upwardImports(pkgs) {
			t.Errorf("%s: %s: internal/ may import only internal/ and third-party packages", goos, b)
		}
	}
}

// decodeImports reads go list -json's stream of objects.
func decodeImports(b []byte) ([]imports, error) {
	var pkgs []imports
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var p imports
		if err := dec.Decode(&p); err == io.EOF {
			return pkgs, nil
		} else if err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

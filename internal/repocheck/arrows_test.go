package repocheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pkgImports lists every package of the module with its imports (non-test
// files), for linux and windows.
func pkgImports(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, goos := range []string{"linux", "windows"} {
		t.Setenv("GOOS", goos)
		dec := json.NewDecoder(bytes.NewReader(goList(t, "-json", module+"/...")))
		for {
			var p struct {
				ImportPath string
				Imports    []string
			}
			if err := dec.Decode(&p); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			out[p.ImportPath] = append(out[p.ImportPath], p.Imports...)
		}
	}
	return out
}

// The composition root wires everything below it; only berth-agent's main
// may import it, so no package grows a second wiring of the agent.
func TestOnlyCmdAgentImportsTheCompositionRoot(t *testing.T) {
	root := module + "/agent"
	for pkg, imps := range pkgImports(t) {
		for _, imp := range imps {
			if imp == root && pkg != module+"/cmd/agent" {
				t.Errorf("%s imports %s: only cmd/agent may (build what you need from the subsystems, or add a one-shot constructor to agent/)", pkg, root)
			}
		}
	}
}

// flavorBranch finds code that decides by an engine flavor's name.
var flavorBranch = regexp.MustCompile(`(==|!=)\s*"(docker|containerd)"|"(docker|containerd)"\s*(==|!=)|case\s+"(docker|containerd)"`)

// What differs between engine flavors lives in engine/ (each flavor's
// package behind engine.Flavor; names mapped in engine/flavors). A branch on
// a flavor's name elsewhere is a flavor's behaviour in the wrong place.
func TestNoFlavorBranchOutsideEngine(t *testing.T) {
	top := filepath.Join("..", "..")
	// packaging/enginebundle builds test packages in each flavor's own
	// release-archive layout: knowing the flavors by name is its job.
	allowed := []string{"engine", filepath.Join("packaging", "enginebundle")}
	files := 0
	err := filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(top, path)
		if d.IsDir() {
			for _, a := range allowed {
				if rel == a {
					return filepath.SkipDir
				}
			}
			// Conformance suites and test fixtures (storetest, tiertest,
			// imagetest, …) are test code: they name flavors as data.
			if strings.HasSuffix(d.Name(), "test") {
				return filepath.SkipDir
			}
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			if flavorBranch.MatchString(sc.Text()) {
				t.Errorf("%s:%d decides by a flavor's name: %s\n\tmove the behaviour into the flavor's package behind engine.Flavor, or map the name in engine/flavors", rel, n, strings.TrimSpace(sc.Text()))
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no Go file was read: the walk is broken")
	}
}

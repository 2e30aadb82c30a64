package repocheck

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Doc        string
	Name       string
}

func goList(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return out
}

func TestEveryPackageHasADocComment(t *testing.T) {
	dec := json.NewDecoder(bytes.NewReader(goList(t, "-json", "github.com/berthhq/berth/...")))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment: say what it holds", p.ImportPath)
		}
	}
}

// The agent runs on every host: it must not carry the control server, SQL
// drivers, the web UI, or the operator's signing code.
func TestAgentDependencies(t *testing.T) {
	deny := []string{
		"github.com/berthhq/berth/packaging/tufrepo",
		"github.com/berthhq/berth/control/store",
		"github.com/berthhq/berth/control/web",
		"modernc.org/sqlite",
		"github.com/jackc/pgx",
		"github.com/chromedp",
	}
	for _, goos := range []string{"linux", "windows"} {
		cmd := exec.Command("go", "list", "-deps", "./cmd/agent")
		cmd.Dir = "../.."
		cmd.Env = append(cmd.Environ(), "GOOS="+goos, "GOARCH=amd64")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps ./cmd/agent (%s): %v", goos, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			// database/sql/driver is only interfaces (google/uuid uses it);
			// database/sql itself means a database in the agent.
			if dep == "database/sql" {
				t.Errorf("%s agent depends on database/sql", goos)
			}
			for _, d := range deny {
				if dep == d || strings.HasPrefix(dep, d+"/") {
					t.Errorf("%s agent depends on %s", goos, dep)
				}
			}
		}
	}
}

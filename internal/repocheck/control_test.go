package repocheck

import (
	"os/exec"
	"strings"
	"testing"
)

// The operator's client and the web page read the fleet through
// control/wire's types: neither may link a SQL driver (which would come
// with control/store), so tools built on the client stay small and the
// page cannot reach past the store's read methods.
func TestNoSQLInControlClientAndWeb(t *testing.T) {
	deny := []string{
		"github.com/berthhq/berth/control/store",
		"modernc.org/sqlite",
		"github.com/jackc/pgx",
		"database/sql",
	}
	for _, pkg := range []string{"./control/client", "./control/web"} {
		cmd := exec.Command("go", "list", "-deps", pkg)
		cmd.Dir = "../.."
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, d := range deny {
				// database/sql/driver is only interfaces; database/sql
				// itself means a database.
				if dep == d || (d != "database/sql" && strings.HasPrefix(dep, d+"/")) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}

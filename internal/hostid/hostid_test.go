package hostid

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/statedb"
)

// imds is an IMDS stand-in: it answers the vmId path with id, or with
// status when it is not 200, or never when hang is set.
func imds(t *testing.T, status int, id string, hang bool) string {
	t.Helper()
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" || r.URL.Path != "/metadata/instance/compute/vmId" || r.URL.Query().Get("format") != "text" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if hang {
			select {
			case <-stop:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(id))
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv.URL
}

func machine(id string, err error) func() (string, error) {
	return func() (string, error) { return id, err }
}

func TestResolveOrder(t *testing.T) {
	const vm = "02aab8a4-74ef-476e-8182-f6d2ba4166a6"
	noMachine := errors.New("no machine id")
	tests := []struct {
		name       string
		configured string
		imds       func(t *testing.T) string
		machine    func() (string, error)
		want       string
		source     Source
		wantErr    string
	}{
		{"config wins", " pool1-host7 ", func(t *testing.T) string { return imds(t, 200, vm, false) }, machine("abc", nil), "pool1-host7", FromConfig, ""},
		{"config invalid", "bad id!", func(t *testing.T) string { return imds(t, 200, vm, false) }, machine("abc", nil), "", "", "agent.id"},
		{"imds vmId, lower-cased", "", func(t *testing.T) string { return imds(t, 200, strings.ToUpper(vm)+"\n", false) }, machine("abc", nil), vm, FromIMDS, ""},
		{"imds refuses", "", func(t *testing.T) string { return imds(t, 403, "resolve_deny", false) }, machine("3D1219C7C4C5404AAA1F6D2A48ADFDA4\n", nil), "3d1219c7c4c5404aaa1f6d2a48adfda4", FromMachineID, ""},
		{"imds answers junk", "", func(t *testing.T) string { return imds(t, 200, "resolve_deny: denied destination", false) }, machine("abc", nil), "abc", FromMachineID, ""},
		{"imds down", "", func(t *testing.T) string { return "http://127.0.0.1:1" }, machine("abc", nil), "abc", FromMachineID, ""},
		{"imds hangs", "", func(t *testing.T) string { return imds(t, 200, vm, true) }, machine("abc", nil), "abc", FromMachineID, ""},
		{"nothing answers", "", func(t *testing.T) string { return "http://127.0.0.1:1" }, machine("", noMachine), "", FromRandom, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			id, err := Resolve(context.Background(), Options{
				Configured:  tt.configured,
				IMDS:        tt.imds(t),
				IMDSTimeout: 300 * time.Millisecond,
				MachineID:   tt.machine,
			})
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Resolve took %s; the IMDS timeout is 300ms", took)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Resolve = %+v, %v; want an ErrInvalid error naming %q", id, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Source != tt.source {
				t.Errorf("source = %s, want %s", id.Source, tt.source)
			}
			if tt.want != "" && id.Value != tt.want {
				t.Errorf("id = %q, want %q", id.Value, tt.want)
			}
			if err := Validate(id.Value); err != nil {
				t.Errorf("resolved id %q is not valid: %v", id.Value, err)
			}
		})
	}
}

// The id found once is kept while IMDS is down, config still wins over it,
// and a changed machine id (a cloned disk) resolves it again.
func TestResolveRemembers(t *testing.T) {
	ctx := context.Background()
	db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	up := imds(t, 200, "vm-1", false)
	down := "http://127.0.0.1:1"
	steps := []struct {
		name       string
		configured string
		imds       string
		machine    string
		want       string
		remembered bool
	}{
		{"first boot, IMDS up", "", up, "m1", "vm-1", false},
		{"IMDS down at boot", "", down, "m1", "vm-1", true},
		{"config wins", "chosen", down, "m1", "chosen", false},
		{"config removed", "", down, "m1", "vm-1", true},
		{"disk cloned", "", down, "m2", "m2", false},
		{"clone keeps its id", "", up, "m2", "m2", true},
	}
	for _, s := range steps {
		id, err := Resolve(ctx, Options{Configured: s.configured, DB: db, IMDS: s.imds, IMDSTimeout: 300 * time.Millisecond, MachineID: machine(s.machine, nil)})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if id.Value != s.want || id.Remembered != s.remembered {
			t.Fatalf("%s: got %q (remembered %v), want %q (remembered %v)", s.name, id.Value, id.Remembered, s.want, s.remembered)
		}
	}
}

func TestIMDSEnv(t *testing.T) {
	t.Setenv(IMDSEnv, imds(t, 200, "from-env", false))
	got, err := VMID(context.Background(), "", time.Second)
	if err != nil || got != "from-env" {
		t.Fatalf("VMID = %q, %v; want from-env", got, err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"02aab8a4-74ef-476e-8182-f6d2ba4166a6", true},
		{"host_1.pool-a", true},
		{"", false},
		{"-lead", false},
		{".lead", false},
		{"has space", false},
		{"slash/no", false},
		{"ünïcode", false},
		{strings.Repeat("a", MaxLen), true},
		{strings.Repeat("a", MaxLen+1), false},
	}
	for _, tt := range tests {
		err := Validate(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q) error does not wrap ErrInvalid: %v", tt.id, err)
		}
	}
}

func TestOSReleaseValue(t *testing.T) {
	const text = "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\nBAD_LINE\nSINGLE='single quoted'\n"
	tests := []struct{ key, want string }{
		{"PRETTY_NAME", "Ubuntu 24.04.1 LTS"},
		{"ID", "ubuntu"},
		{"SINGLE", "single quoted"},
		{"MISSING", ""},
	}
	for _, tt := range tests {
		if got := osReleaseValue(text, tt.key); got != tt.want {
			t.Errorf("osReleaseValue(%s) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestOSBuild(t *testing.T) {
	got := OSBuild()
	if got == "" {
		t.Fatal("OSBuild is empty")
	}
	if runtime.GOOS == "linux" && !strings.Contains(got, "(kernel ") {
		t.Errorf("OSBuild = %q; want the kernel release in it", got)
	}
	t.Logf("OSBuild = %q", got)
}

func TestMachineID(t *testing.T) {
	id, err := MachineID()
	if err != nil {
		t.Skipf("no machine id here: %v", err)
	}
	if _, err := normalize(id); err != nil {
		t.Errorf("machine id %q does not normalize: %v", id, err)
	}
}

// An agent.db the agent cannot use (a directory in its place) does not stop
// the id from being resolved: the agent must start to report it.
func TestResolveWithUnusableDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := statedb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := Resolve(context.Background(), Options{DB: db, IMDS: imds(t, 200, "vm-1", false), IMDSTimeout: time.Second, MachineID: machine("m1", nil)})
	if err != nil || id.Value != "vm-1" {
		t.Fatalf("Resolve = %+v, %v; want vm-1 from IMDS", id, err)
	}
}

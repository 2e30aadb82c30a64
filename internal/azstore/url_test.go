package azstore

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var parseTests = []struct {
	in      string
	want    Location
	wantErr string
}{
	{
		in:   "https://acct1.blob.core.windows.net/releases",
		want: Location{ServiceURL: "https://acct1.blob.core.windows.net", Account: "acct1", Container: "releases"},
	},
	{
		in:   "https://acct1.blob.core.windows.net/releases/",
		want: Location{ServiceURL: "https://acct1.blob.core.windows.net", Account: "acct1", Container: "releases"},
	},
	{
		in:   "https://Acct1.BLOB.core.windows.net/cache/east/v1",
		want: Location{ServiceURL: "https://acct1.blob.core.windows.net", Account: "acct1", Container: "cache", Prefix: "east/v1/"},
	},
	{
		in:   "https://acct1-secondary.blob.core.windows.net/releases",
		want: Location{ServiceURL: "https://acct1-secondary.blob.core.windows.net", Account: "acct1", Container: "releases"},
	},
	{
		in:   "https://acct1.privatelink.blob.core.windows.net/releases",
		want: Location{ServiceURL: "https://acct1.privatelink.blob.core.windows.net", Account: "acct1", Container: "releases"},
	},
	{
		in:   "https://acct1.blob.core.chinacloudapi.cn/releases",
		want: Location{ServiceURL: "https://acct1.blob.core.chinacloudapi.cn", Account: "acct1", Container: "releases"},
	},
	{
		in:   "http://127.0.0.1:10000/devstoreaccount1/releases",
		want: Location{ServiceURL: "http://127.0.0.1:10000/devstoreaccount1", Account: "devstoreaccount1", Container: "releases", PathStyle: true},
	},
	{
		in:   "http://localhost:10000/devstoreaccount1/releases/a/b/",
		want: Location{ServiceURL: "http://localhost:10000/devstoreaccount1", Account: "devstoreaccount1", Container: "releases", Prefix: "a/b/", PathStyle: true},
	},
	{
		in:   "http://[::1]:10000/devstoreaccount1/$web",
		want: Location{ServiceURL: "http://[::1]:10000/devstoreaccount1", Account: "devstoreaccount1", Container: "$web", PathStyle: true},
	},
	{
		in:   "https://storage.internal:8443/account9/releases",
		want: Location{ServiceURL: "https://storage.internal:8443/account9", Account: "account9", Container: "releases", PathStyle: true},
	},
	{in: "http://acct1.blob.core.windows.net/releases", wantErr: "plain http is allowed only to a loopback emulator"},
	{in: "ftp://acct1.blob.core.windows.net/releases", wantErr: "scheme must be https"},
	{in: "/var/lib/releases", wantErr: "scheme must be https"},
	{in: "https://acct1.blob.core.windows.net", wantErr: "missing the container name"},
	{in: "https://acct1.blob.core.windows.net/releases?sv=2024&sig=SECRET", wantErr: "must not carry a query; put a SAS token in sasFile"},
	{in: "https://user:SECRET@acct1.blob.core.windows.net/releases", wantErr: "must not carry a user"},
	{in: "https://acct1.blob.core.windows.net/Releases", wantErr: "may hold only lowercase letters"},
	{in: "https://acct1.blob.core.windows.net/re--leases", wantErr: "single inner hyphens"},
	{in: "https://acct1.blob.core.windows.net/ab", wantErr: "3 to 63 characters"},
	{in: "https://ACCT_1.blob.core.windows.net/releases", wantErr: "may hold only lowercase letters and digits"},
	{in: "http://127.0.0.1:10000/", wantErr: "needs the account and the container"},
	{in: "http://127.0.0.1:10000/devstoreaccount1", wantErr: "missing the container name"},
	{in: "http://127.0.0.1:10000/devstoreaccount1/releases/../x", wantErr: `segment ".."`},
	{in: "http://127.0.0.1:10000/devstoreaccount1/releases/a%3Fb", wantErr: "may hold only letters"},
	{in: "https://acct1.blob.core.windows.net/releases#frag", wantErr: "must not carry a fragment"},
	{in: "https:///releases", wantErr: "missing host"},
}

func TestParseURL(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURL(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Fatalf("error leaks a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseURL(%q) (-want +got):\n%s", tt.in, diff)
			}
			again, err := ParseURL(got.String())
			if err != nil {
				t.Fatalf("ParseURL(String()=%q): %v", got.String(), err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("String() does not parse back (-first +again):\n%s", diff)
			}
		})
	}
}

func TestLocationBlobName(t *testing.T) {
	l := Location{Prefix: "east/"}
	if got := l.BlobName("/metadata/1.root.json"); got != "east/metadata/1.root.json" {
		t.Errorf("BlobName = %q", got)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@a.blob.core.windows.net/c?sig=x#f": "https://a.blob.core.windows.net/c",
		"https://a.blob.core.windows.net/c?":            "https://a.blob.core.windows.net/c",
		"::bad?sig=secret":                              "::bad",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		loc, err := ParseURL(raw)
		if err != nil {
			if strings.Contains(raw, "sig=S3CR3T") && strings.Contains(err.Error(), "S3CR3T") {
				t.Fatalf("error leaks the query: %v", err)
			}
			return
		}
		if loc.Account == "" || loc.Container == "" || loc.ServiceURL == "" {
			t.Fatalf("ParseURL(%q) = %+v without error", raw, loc)
		}
		if loc.Prefix != "" && !strings.HasSuffix(loc.Prefix, "/") {
			t.Fatalf("prefix %q lacks a trailing slash", loc.Prefix)
		}
		again, err := ParseURL(loc.String())
		if err != nil {
			t.Fatalf("ParseURL(%q) ok but String()=%q fails: %v", raw, loc.String(), err)
		}
		if again != loc {
			t.Fatalf("round trip of %q: %+v != %+v", raw, again, loc)
		}
	})
}

func TestFolderPath(t *testing.T) {
	for in, want := range map[string]struct {
		path string
		ok   bool
	}{
		"/srv/releases":              {"/srv/releases", true},
		"relative/dir":               {"relative/dir", true},
		"file:///srv/releases":       {filepath.FromSlash("/srv/releases"), true},
		"https://a.example/releases": {"", false},
		"":                           {"", false},
	} {
		p, ok := FolderPath(in)
		if p != want.path || ok != want.ok {
			t.Errorf("FolderPath(%q) = %q, %v; want %q, %v", in, p, ok, want.path, want.ok)
		}
	}
}

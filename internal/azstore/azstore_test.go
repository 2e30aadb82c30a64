package azstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/internal/secret"
	"github.com/berthhq/berth/internal/testenv/azurite"
)

const devKey = azurite.Key

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewCredentialErrors(t *testing.T) {
	t.Setenv(EnvAccountKey, "")
	t.Setenv(EnvSASToken, "")
	const azure = "https://acct1.blob.core.windows.net/releases"
	const emu = "http://127.0.0.1:10000/devstoreaccount1/releases"
	for _, tt := range []struct {
		name string
		url  string
		cred Credential
		want string
	}{
		{"shared-key without key", azure, Credential{Auth: AuthSharedKey}, "shared-key auth needs keyFile or AZURE_STORAGE_KEY"},
		{"shared-key missing file", azure, Credential{Auth: AuthSharedKey, KeyFile: "/nonexistent/key"}, "read secret file"},
		{"shared-key not base64", azure, Credential{Auth: AuthSharedKey, KeyFile: writeFile(t, "k", "not*base64!SECRET")}, "is not valid base64; copy key1 or key2 of account acct1"},
		{"sas without token", azure, Credential{Auth: AuthSAS}, "sas auth needs sasFile or AZURE_STORAGE_SAS_TOKEN"},
		{"sas without sig", azure, Credential{Auth: AuthSAS, SASFile: writeFile(t, "s", "sv=2024-01-01&se=SECRET")}, "has no sig= parameter"},
		{"sas with url", azure, Credential{Auth: AuthSAS, SASFile: writeFile(t, "s2", "https://x/y?sig=SECRET #")}, "white space"},
		{"managed identity over http", emu, Credential{Auth: AuthManagedIdentity}, "managed-identity auth needs an https URL"},
		{"unknown auth", azure, Credential{Auth: "token"}, `unknown auth "token": want managed-identity, shared-key, sas or none`},
		{"bad url", "https://acct1.blob.core.windows.net/", Credential{Auth: AuthNone}, "missing the container name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.url, tt.cred, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestSecretNeverLogged(t *testing.T) {
	t.Setenv(EnvAccountKey, devKey)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, err := New("http://127.0.0.1:10000/devstoreaccount1/releases", Credential{Auth: AuthSharedKey}, Options{Logger: log}); err != nil {
		t.Fatal(err)
	}
	s := secret.Value("hunter2")
	log.Info("direct", "secret", s)
	out := buf.String() + fmt.Sprintf("%v %s %#v %+v", s, s, s, struct{ S secret.Value }{s})
	for _, leak := range []string{devKey[:20], "hunter2"} {
		if strings.Contains(out, leak) {
			t.Fatalf("secret leaked: %s", out)
		}
	}
	if !strings.Contains(buf.String(), "REDACTED") {
		t.Fatalf("expected a redacted key in the debug log, got %s", buf.String())
	}
	if s.Reveal() != "hunter2" {
		t.Fatal("Reveal lost the value")
	}
}

// TestManagedIdentity checks the token request azidentity makes (App
// Service path: IDENTITY_ENDPOINT + IDENTITY_HEADER) and that the token
// reaches the storage endpoint as a bearer header.
func TestManagedIdentity(t *testing.T) {
	type tokenReq struct{ Resource, ClientID, Header, APIVersion string }
	var (
		mu        sync.Mutex
		tokenReqs []tokenReq
		authz     []string
	)
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mu.Lock()
		tokenReqs = append(tokenReqs, tokenReq{q.Get("resource"), q.Get("client_id"), r.Header.Get("X-IDENTITY-HEADER"), q.Get("api-version")})
		mu.Unlock()
		// Under five minutes: MSAL's process-wide cache will not serve it
		// again, so every run of the test sees its token request.
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%s","expires_in":120,"token_type":"Bearer","resource":%q}`, q.Get("client_id"), q.Get("resource"))
	}))
	defer tokens.Close()
	storage := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		authz = append(authz, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Method == http.MethodPut && r.URL.Query().Get("restype") == "container" {
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer storage.Close()
	t.Setenv("IDENTITY_ENDPOINT", tokens.URL)
	t.Setenv("IDENTITY_HEADER", "identity-header-value")

	for _, tt := range []struct {
		name     string
		clientID string
	}{
		{"system-assigned", ""},
		{"user-assigned", "11111111-2222-3333-4444-555555555555"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			tokenReqs, authz = nil, nil
			mu.Unlock()
			u := storage.URL + "/acct1/releases" + strings.ReplaceAll(tt.name, "-", "")
			c, err := New(u, Credential{Auth: AuthManagedIdentity, ClientID: tt.clientID}, Options{HTTPClient: storage.Client()})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.EnsureContainer(context.Background()); err != nil {
				t.Fatalf("EnsureContainer: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			wantTok := []tokenReq{{Resource: "https://storage.azure.com", ClientID: tt.clientID, Header: "identity-header-value", APIVersion: "2019-08-01"}}
			if diff := cmp.Diff(wantTok, tokenReqs); diff != "" {
				t.Errorf("token requests (-want +got):\n%s", diff)
			}
			wantAuthz := []string{"PUT /acct1/releases" + strings.ReplaceAll(tt.name, "-", "") + " Bearer tok-" + tt.clientID}
			if diff := cmp.Diff(wantAuthz, authz); diff != "" {
				t.Errorf("storage requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAzurite(t *testing.T) {
	az := azurite.Start(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name      string
		container string
		cred      func(t *testing.T) Credential
		readOnly  bool
	}{
		{"shared-key file", "sk-file", func(t *testing.T) Credential {
			return Credential{Auth: AuthSharedKey, KeyFile: az.KeyFile(t)}
		}, false},
		{"shared-key env", "sk-env", func(t *testing.T) Credential {
			t.Setenv(EnvAccountKey, az.Key)
			return Credential{Auth: AuthSharedKey}
		}, false},
		{"sas file", "sas-file", func(t *testing.T) Credential {
			return Credential{Auth: AuthSAS, SASFile: az.SASFile(t, "sas-file", "racwdl")}
		}, false},
		{"sas env with question mark", "sas-env", func(t *testing.T) Credential {
			t.Setenv(EnvSASToken, "?"+az.SAS(t, "sas-env", "racwdl"))
			return Credential{Auth: AuthSAS}
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The container is made with the account key: a container SAS
			// cannot create its container.
			admin, err := New(az.ContainerURL(tt.container), Credential{Auth: AuthSharedKey, KeyFile: az.KeyFile(t)}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := admin.EnsureContainer(ctx); err != nil {
				t.Fatalf("EnsureContainer: %v", err)
			}
			if err := admin.EnsureContainer(ctx); err != nil {
				t.Fatalf("EnsureContainer again: %v", err)
			}
			c, err := New(az.ContainerURL(tt.container)+"/pre/fix", tt.cred(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.EnsureContainer(ctx); err != nil {
				t.Fatalf("EnsureContainer with %s: %v", tt.name, err)
			}
			src := writeFile(t, "blob", "0123456789")
			if err := c.UploadFile(ctx, "dir/a.txt", src, UploadOptions{ContentType: "text/plain", Metadata: map[string]string{"sha256": "abc"}}); err != nil {
				t.Fatalf("UploadFile: %v", err)
			}
			if err := c.UploadFile(ctx, "dir/a.txt", src, UploadOptions{}); !errors.Is(err, ErrExists) {
				t.Fatalf("UploadFile over an existing blob = %v, want ErrExists", err)
			}
			if err := c.UploadFile(ctx, "dir/a.txt", src, UploadOptions{Overwrite: true, Metadata: map[string]string{"sha256": "abc"}}); err != nil {
				t.Fatalf("UploadFile with Overwrite: %v", err)
			}
			bi, err := c.Stat(ctx, "dir/a.txt")
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if bi.Size != 10 || len(bi.MD5) != 16 || bi.Metadata["sha256"] != "abc" {
				t.Errorf("Stat = %+v", bi)
			}
			// The blob is under the URL's prefix.
			if _, err := admin.Stat(ctx, "pre/fix/dir/a.txt"); err != nil {
				t.Errorf("blob not under the prefix: %v", err)
			}
			rc, total, err := c.Open(ctx, "dir/a.txt", 4)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != "456789" || total != 10 {
				t.Errorf("Open at 4 = %q, total %d", got, total)
			}
			rc, total, err = c.Open(ctx, "dir/a.txt", 10)
			if err != nil {
				t.Fatalf("Open at the end: %v", err)
			}
			got, _ = io.ReadAll(rc)
			rc.Close()
			if len(got) != 0 || total != 10 {
				t.Errorf("Open at the end = %q, total %d; want nothing, 10", got, total)
			}
			if _, _, err := c.Open(ctx, "missing", 0); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Open missing = %v, want fs.ErrNotExist", err)
			}
			if _, err := c.Stat(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat missing = %v, want fs.ErrNotExist", err)
			}
			if err := c.Delete(ctx, "dir/a.txt"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if err := c.Delete(ctx, "dir/a.txt"); err != nil {
				t.Fatalf("Delete again: %v", err)
			}
		})
	}

	t.Run("wrong key is explained", func(t *testing.T) {
		bad := writeFile(t, "bad", "AAAA"+devKey[4:])
		c, err := New(az.ContainerURL("wrongkey"), Credential{Auth: AuthSharedKey, KeyFile: bad}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Stat(ctx, "x")
		if err == nil || !strings.Contains(err.Error(), "storage refused shared-key auth") {
			t.Fatalf("Stat with a wrong key = %v", err)
		}
	})
	t.Run("read-only sas cannot write", func(t *testing.T) {
		admin, _ := New(az.ContainerURL("readonly"), Credential{Auth: AuthSharedKey, KeyFile: az.KeyFile(t)}, Options{})
		if err := admin.EnsureContainer(ctx); err != nil {
			t.Fatal(err)
		}
		c, err := New(az.ContainerURL("readonly"), Credential{Auth: AuthSAS, SASFile: az.SASFile(t, "readonly", "rl")}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = c.UploadFile(ctx, "x", writeFile(t, "x", "x"), UploadOptions{})
		if err == nil || !strings.Contains(err.Error(), "storage refused sas auth") {
			t.Fatalf("upload with a read-only SAS = %v", err)
		}
	})
}

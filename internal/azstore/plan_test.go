package azstore

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/internal/secret"
)

// New's pure steps, each as a got/want table: which client an auth opens
// and where its secret comes from, how a loaded secret is checked, and
// what the debug line says.

var (
	azureLoc = Location{ServiceURL: "https://acct1.blob.core.windows.net", Account: "acct1", Container: "releases"}
	emuLoc   = Location{ServiceURL: "http://127.0.0.1:10000/devstoreaccount1", Account: "devstoreaccount1", Container: "releases", PathStyle: true}
)

func TestPlanAuth(t *testing.T) {
	for _, c := range []struct {
		name string
		loc  Location
		cred Credential
		want authPlan
		err  string
	}{
		{"managed identity by default", azureLoc, Credential{},
			authPlan{auth: AuthManagedIdentity, client: tokenClient}, ""},
		{"user-assigned managed identity", azureLoc, Credential{Auth: AuthManagedIdentity, ClientID: "id-1", KeyFile: "ignored"},
			authPlan{auth: AuthManagedIdentity, client: tokenClient, clientID: "id-1"}, ""},
		{"shared key from a file", emuLoc, Credential{Auth: AuthSharedKey, KeyFile: "/k", SASFile: "ignored"},
			authPlan{auth: AuthSharedKey, client: sharedKeyClient, fileKey: "keyFile", file: "/k", env: EnvAccountKey}, ""},
		{"shared key from the environment", azureLoc, Credential{Auth: AuthSharedKey, ClientID: "ignored"},
			authPlan{auth: AuthSharedKey, client: sharedKeyClient, fileKey: "keyFile", env: EnvAccountKey}, ""},
		{"sas", azureLoc, Credential{Auth: AuthSAS, SASFile: "/s"},
			authPlan{auth: AuthSAS, client: anonymousClient, fileKey: "sasFile", file: "/s", env: EnvSASToken}, ""},
		{"none takes no secret", emuLoc, Credential{Auth: AuthNone, KeyFile: "ignored", SASFile: "ignored"},
			authPlan{auth: AuthNone, client: anonymousClient}, ""},
		{"managed identity over http", emuLoc, Credential{Auth: AuthManagedIdentity},
			authPlan{}, "storage http://127.0.0.1:10000/devstoreaccount1/releases: managed-identity auth needs an https URL"},
		{"default over http", emuLoc, Credential{}, authPlan{}, "managed-identity auth needs an https URL"},
		{"unknown auth", azureLoc, Credential{Auth: "token"}, authPlan{}, `unknown auth "token": want managed-identity, shared-key, sas or none`},
		{"auth is case-sensitive", azureLoc, Credential{Auth: "SAS"}, authPlan{}, `unknown auth "SAS"`},
	} {
		got, err := planAuth(c.loc, c.cred)
		if !wantErr(t, c.name+": planAuth", err, c.err) {
			continue
		}
		if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(authPlan{})); diff != "" {
			t.Errorf("%s: planAuth (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestCheckSecret(t *testing.T) {
	key := authPlan{auth: AuthSharedKey, client: sharedKeyClient, fileKey: "keyFile", env: EnvAccountKey}
	sas := authPlan{auth: AuthSAS, client: anonymousClient, fileKey: "sasFile", env: EnvSASToken}
	for _, c := range []struct {
		name string
		plan authPlan
		sec  secret.Value
		want secret.Value
		err  string
	}{
		{"account key", key, "a2V5LVNFQ1JFVA==", "a2V5LVNFQ1JFVA==", ""},
		{"no account key", key, "", "", "storage https://acct1.blob.core.windows.net/releases: shared-key auth needs keyFile or AZURE_STORAGE_KEY"},
		{"account key not base64", key, "not*base64!SECRET", "", "shared-key: the account key from $X is not valid base64; copy key1 or key2 of account acct1"},
		{"sas token", sas, "sv=2024-01-01&sig=SECRET", "sv=2024-01-01&sig=SECRET", ""},
		{"sas token with its ?", sas, "?sv=2024-01-01&sig=SECRET", "sv=2024-01-01&sig=SECRET", ""},
		{"no sas token", sas, "", "", "sas auth needs sasFile or AZURE_STORAGE_SAS_TOKEN"},
		{"sas without sig", sas, "sv=2024-01-01&se=SECRET", "", "the SAS token from $X has no sig= parameter"},
		{"sas as a url", sas, "https://x/y?sig=SECRET #", "", "the SAS token from $X holds white space"},
		{"sas not a query", sas, "=SECRET&sig=x", "", "is not a URL query string"},
	} {
		got, err := checkSecret(azureLoc, c.plan, c.sec, "$X")
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: the error shows the secret: %v", c.name, err)
		}
		if !wantErr(t, c.name+": checkSecret", err, c.err) {
			continue
		}
		if got.Reveal() != c.want.Reveal() {
			t.Errorf("%s: checkSecret = %q, want %q", c.name, got.Reveal(), c.want.Reveal())
		}
	}
}

func TestLogAttrs(t *testing.T) {
	url := "https://acct1.blob.core.windows.net/releases"
	for _, c := range []struct {
		name string
		plan authPlan
		want []any
	}{
		{"managed identity", authPlan{auth: AuthManagedIdentity, client: tokenClient, clientID: "id-1"},
			[]any{"url", url, "auth", AuthManagedIdentity, "clientId", "id-1"}},
		{"shared key", authPlan{auth: AuthSharedKey, client: sharedKeyClient},
			[]any{"url", url, "auth", AuthSharedKey, "account", "acct1", "key", secret.Value("s"), "keyFrom", "file /k"}},
		{"sas", authPlan{auth: AuthSAS, client: anonymousClient},
			[]any{"url", url, "auth", AuthSAS, "sas", secret.Value("s"), "sasFrom", "file /k"}},
		{"none", authPlan{auth: AuthNone, client: anonymousClient}, []any{"url", url, "auth", AuthNone}},
	} {
		got := c.plan.logAttrs(azureLoc, "s", "file /k")
		// secret.Value prints REDACTED, so compare what %#v cannot hide:
		// the types and the revealed values.
		if diff := cmp.Diff(c.want, got, cmp.Comparer(func(a, b secret.Value) bool { return a.Reveal() == b.Reveal() })); diff != "" {
			t.Errorf("%s: logAttrs (-want +got):\n%s", c.name, diff)
		}
	}
}

// wantErr checks a step's error: none when want is "", else one saying
// want. It reports whether the step succeeded as wanted, so its result is
// worth comparing.
func wantErr(t *testing.T, step string, err error, want string) bool {
	t.Helper()
	switch {
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s = %v, want an error saying %q", step, err, want)
	case want == "" && err != nil:
		t.Errorf("%s: %v", step, err)
	}
	return want == "" && err == nil
}

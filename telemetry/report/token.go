package report

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// TokenSource gives the bearer token of a report request. There are three:
// the VM's managed identity (AzureToken), a file (FileToken) and none
// (NoToken); the load generator adds its own per simulated host.
type TokenSource interface {
	// Token returns the token to send, or "" to send no Authorization
	// header. refresh is true after the endpoint refused the previous
	// token with 401: a source with a cache must bypass it.
	Token(ctx context.Context, refresh bool) (string, error)
}

// NoToken sends no Authorization header (control.auth: none).
type NoToken struct{}

// Token returns "".
func (NoToken) Token(context.Context, bool) (string, error) { return "", nil }

// FileToken reads the token from a file on every request (control.auth:
// token), so a token rotated in place is picked up without a restart. The
// file is small and read at most once a batch, so not caching it costs
// nothing.
type FileToken struct {
	Path string
}

// Token returns the file's content without surrounding white space.
func (f FileToken) Token(context.Context, bool) (string, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return "", fmt.Errorf("read control.tokenFile %s: %w", f.Path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("control.tokenFile %s is empty; write the agent's token into it (berth-control token issue --agent ID)", f.Path)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("control.tokenFile %s holds more than one line; it must hold the token alone", f.Path)
	}
	return tok, nil
}

// AzureToken gets tokens for the control endpoint's audience from an
// azidentity credential (control.auth: managed-identity).
//
// azidentity caches tokens itself: ManagedIdentityCredential keeps them in
// MSAL's in-memory cache and asks IMDS again only once the token's refresh
// time (about half its life) has passed, so Token may be called for every
// batch.
type AzureToken struct {
	cred  azcore.TokenCredential
	scope string
}

// NewAzureToken returns a source of cred's tokens for audience (for
// example api://berth-control). The scope asked for is audience +
// "/.default" unless the audience already ends so.
func NewAzureToken(cred azcore.TokenCredential, audience string) (*AzureToken, error) {
	audience = strings.TrimSpace(audience)
	if audience == "" {
		return nil, errors.New("control.audience is empty: managed-identity auth needs the control endpoint's application id URI, for example api://berth-control")
	}
	scope := audience
	if !strings.HasSuffix(scope, "/.default") {
		scope = strings.TrimSuffix(scope, "/") + "/.default"
	}
	return &AzureToken{cred: cred, scope: scope}, nil
}

// NewManagedIdentity returns an AzureToken backed by the VM's managed
// identity: the system-assigned one, or the user-assigned one whose client
// id is clientID (control.clientId). opts may be nil; tests set its
// Transport.
func NewManagedIdentity(audience, clientID string, opts *azcore.ClientOptions) (*AzureToken, error) {
	var o azidentity.ManagedIdentityCredentialOptions
	if opts != nil {
		o.ClientOptions = *opts
	}
	if clientID != "" {
		o.ID = azidentity.ClientID(clientID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(&o)
	if err != nil {
		return nil, fmt.Errorf("managed identity for the control endpoint: %w", err)
	}
	return NewAzureToken(cred, audience)
}

// Scope returns the scope tokens are asked for.
func (a *AzureToken) Scope() string { return a.scope }

// Token returns a token for the scope. With refresh, it asks with a claims
// value, which is how MSAL is told to skip its cache; the value demands a
// token issued not before now, which is what the endpoint's 401 asked for.
// IMDS ignores the claims themselves.
func (a *AzureToken) Token(ctx context.Context, refresh bool) (string, error) {
	o := policy.TokenRequestOptions{Scopes: []string{a.scope}}
	if refresh {
		o.Claims = fmt.Sprintf(`{"access_token":{"nbf":{"essential":true,"value":"%d"}}}`, time.Now().Unix())
	}
	tok, err := a.cred.GetToken(ctx, o)
	if err != nil {
		return "", fmt.Errorf("get a token for %s: %w", a.scope, err)
	}
	return tok.Token, nil
}

var (
	_ TokenSource = NoToken{}
	_ TokenSource = FileToken{}
	_ TokenSource = (*AzureToken)(nil)
)

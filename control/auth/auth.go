// Package auth decides who is calling the control endpoint. A caller sends
// "Authorization: Bearer <token>" with one of two kinds of token:
//
//   - a Microsoft Entra ID access token (an Azure VM's managed identity
//     token for the control endpoint's audience, or an operator's token),
//     checked against the tenant's signing keys, audience, issuer, tenant
//     and lifetime, then sorted into operator, agent or neither by its
//     claims (see Entra); or
//   - a token issued by "berth-control token issue" (an opaque string
//     starting with "berth_"), looked up in the store.
//
// Authenticate turns the header into a Principal or an error wrapping
// ErrUnauthenticated whose message says what was wrong and never repeats
// the token. The server maps the Principal to what the caller may do.
//
// "--auth none" is for a laptop demo only: every request is an anonymous
// operator that may also write as any agent.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/berthhq/berth/control/store"
)

// Method is a way of authenticating callers, as named by --auth.
type Method string

// The methods.
const (
	// MethodEntra accepts Microsoft Entra ID access tokens.
	MethodEntra Method = "entra"
	// MethodToken accepts tokens issued by berth-control token issue.
	MethodToken Method = "token"
	// MethodNone authenticates nobody and lets everybody in as an operator
	// that may write as any agent. For a laptop demo only.
	MethodNone Method = "none"
)

// Principal is who a request comes from.
type Principal struct {
	// Role is RoleAgent or RoleOperator.
	Role store.Role
	// Subject names the caller: the Entra object id (oid claim), the
	// issued token's subject (agent id or operator name), or "anonymous"
	// under MethodNone.
	Subject string
	// Agent is the agent id this principal may write reports as when the
	// token itself names it (issued agent tokens). It is "" for Entra
	// tokens, whose binding to an agent id the server makes through the
	// store's BindIdentity on first use, and for operators.
	//
	// Agent == "" with Method == MethodNone means the principal may write
	// as any agent: the demo mode has no identities to check.
	Agent string
	// Method is how the principal was authenticated.
	Method Method
	// Resource is the Azure resource id of an Entra agent's managed
	// identity (the xms_mirid claim), lower-cased, as
	// "/subscriptions/…/resourcegroups/…/providers/microsoft.compute/virtualmachines/vm1";
	// "" when the token carries none. The server binds the host to it.
	Resource string
	// Issued is when an Entra token was issued (iat); zero for issued
	// tokens.
	Issued time.Time
	// Expires is when the credential stops being valid: an Entra token's
	// exp; zero for issued tokens, which are valid until revoked.
	Expires time.Time
	// TokenID is an issued token's id, so that what it opened (a web
	// session) ends when it is revoked; "" for Entra tokens.
	TokenID string
}

// Anonymous is the principal of every request under MethodNone.
var Anonymous = Principal{Role: store.RoleOperator, Subject: "anonymous", Method: MethodNone}

// Errors of Authenticate, checked with errors.Is.
var (
	// ErrUnauthenticated: the request does not prove who sent it; the
	// server answers 401. Every error of Authenticate wraps it.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnavailable: the caller could not be checked because something
	// Authenticate depends on failed (the store, or Entra ID before any
	// signing key was ever fetched). Such errors wrap ErrUnauthenticated
	// too, so a server that only knows ErrUnauthenticated answers 401; one
	// that checks ErrUnavailable first can answer 503 so that agents retry
	// rather than doubt their credentials.
	ErrUnavailable = errors.New("authentication temporarily unavailable")
	// ErrForbidden: the token is genuine but its principal may do nothing
	// here (a user's token without the operator role, a managed identity
	// outside --entra-agent-scope); the server answers 403. Such errors
	// wrap ErrUnauthenticated too.
	ErrForbidden = errors.New("forbidden")
)

// forbiddenError is an error of a genuine token that grants nothing: it
// is both ErrForbidden and ErrUnauthenticated, and its message is only
// the reason.
type forbiddenError struct{ msg string }

func (e *forbiddenError) Error() string { return e.msg }

func (e *forbiddenError) Is(target error) bool {
	return target == ErrForbidden || target == ErrUnauthenticated
}

func forbidden(format string, args ...any) error {
	return &forbiddenError{msg: fmt.Sprintf(format, args...)}
}

// unauthenticated builds an error wrapping ErrUnauthenticated. Messages
// never contain the token; values taken from a token's claims are quoted
// and shortened by claim().
func unauthenticated(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, fmt.Sprintf(format, args...))
}

// Defaults of Entra.
const (
	// DefaultAuthority is the Entra ID (public cloud) login endpoint.
	DefaultAuthority = "https://login.microsoftonline.com"
	// DefaultOperatorRole is the app role that makes an Entra principal
	// an operator.
	DefaultOperatorRole = "Berth.Operator"
)

// Entra configures the acceptance of Entra ID access tokens.
type Entra struct {
	// Tenant is the directory (tenant) id, a GUID: tokens must carry it as
	// tid and be issued by it. Flag: --entra-tenant.
	Tenant string
	// Audience is what the tokens' aud claim must be, exactly: one value
	// or several separated by commas. A v1 token (what managed identities
	// get by default) carries the resource as requested, typically the
	// App ID URI such as "api://berth-control"; a v2 token always carries
	// the application (client) id GUID. "api://x" and "x" are different
	// audiences: list both only if both are meant. Flag: --entra-audience.
	Audience string
	// Authority is the login endpoint, DefaultAuthority when empty; tests
	// point it at a fake. It must be https except on a loopback address.
	// Flag: --entra-authority.
	Authority string
	// OperatorRole is the app role (roles claim) that makes a principal
	// an operator; DefaultOperatorRole when empty. Principals without it
	// are agents if their token is app-only, and nothing otherwise.
	// Flag: --entra-operator-role.
	OperatorRole string
	// AgentScope limits agents to managed identities whose resource
	// (xms_mirid) lies in this subscription or resource group:
	// "/subscriptions/SUB" or "/subscriptions/SUB/resourceGroups/RG".
	// Empty admits every app-only principal of the tenant. Flag:
	// --entra-agent-scope.
	AgentScope string
}

// Options configure New.
type Options struct {
	// Methods are the accepted methods, from --auth (see ParseMethods).
	Methods []Method
	// Entra is required when Methods has MethodEntra.
	Entra *Entra
	// Tokens looks issued tokens up; required when Methods has
	// MethodToken. *store.Store satisfies it.
	Tokens TokenLookup
	// HTTPClient fetches Entra's discovery document and signing keys; nil
	// means a plain client with a 30 s timeout. The server passes one from
	// internal/httpclient.
	HTTPClient *http.Client
	// Logger receives the authenticator's logs (never a token); nil
	// discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
}

// TokenLookup finds an issued token by its secret: ErrNotFound for an
// unknown secret, ErrRevoked for a revoked token (from package store).
type TokenLookup interface {
	LookupToken(ctx context.Context, secret string) (store.Token, error)
}

// ParseMethods parses the value of --auth: "entra", "token", "entra,token"
// (in any order) or "none", which cannot be combined with another.
func ParseMethods(s string) ([]Method, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("--auth is empty: use entra, token, entra,token or none")
	}
	var ms []Method
	for part := range strings.SplitSeq(s, ",") {
		m := Method(strings.ToLower(strings.TrimSpace(part)))
		switch m {
		case MethodEntra, MethodToken, MethodNone:
		case "":
			return nil, fmt.Errorf("--auth %q has an empty method: use entra, token, entra,token or none", s)
		default:
			return nil, fmt.Errorf("--auth: unknown method %q: use entra, token, entra,token or none", part)
		}
		if slices.Contains(ms, m) {
			return nil, fmt.Errorf("--auth: method %q given twice", m)
		}
		ms = append(ms, m)
	}
	if len(ms) > 1 && slices.Contains(ms, MethodNone) {
		return nil, errors.New("--auth none cannot be combined with other methods")
	}
	return ms, nil
}

// Authenticator checks the Authorization header of requests. It is safe
// for concurrent use and owns no goroutine.
type Authenticator struct {
	none   bool
	entra  *entraVerifier // nil unless MethodEntra
	tokens *tokenCache    // nil unless MethodToken
	log    *slog.Logger
}

// New checks the options and returns an Authenticator. It fetches Entra's
// signing keys once (bounded to a few seconds) to warm up and to log a
// misconfiguration early, but an unreachable Entra ID is only a warning:
// the keys are fetched again when an Entra token arrives, at most every
// KeyRefreshFloor; until then Entra tokens fail with ErrUnavailable.
func New(ctx context.Context, o Options) (*Authenticator, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "auth")
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if len(o.Methods) == 0 {
		return nil, errors.New("no authentication method: set --auth (entra, token, entra,token or none)")
	}
	a := &Authenticator{log: log}
	for i, m := range o.Methods {
		if slices.Contains(o.Methods[:i], m) {
			return nil, fmt.Errorf("--auth: method %q given twice", m)
		}
		switch m {
		case MethodNone:
			if len(o.Methods) > 1 {
				return nil, errors.New("--auth none cannot be combined with other methods")
			}
			a.none = true
		case MethodEntra:
			if o.Entra == nil {
				return nil, errors.New("--auth entra needs --entra-tenant and --entra-audience")
			}
			client := o.HTTPClient
			if client == nil {
				client = &http.Client{Timeout: 30 * time.Second}
			}
			v, err := newEntraVerifier(*o.Entra, client, log, now)
			if err != nil {
				return nil, err
			}
			a.entra = v
		case MethodToken:
			if o.Tokens == nil {
				return nil, errors.New("--auth token needs the token store (Options.Tokens is nil)")
			}
			a.tokens = newTokenCache(o.Tokens, now)
		default:
			return nil, fmt.Errorf("--auth: unknown method %q: use entra, token, entra,token or none", m)
		}
	}
	if a.none {
		log.Warn("AUTHENTICATION IS OFF (--auth none): anyone who can reach this endpoint is an operator and may write as any agent; use this for a laptop demo only")
		return a, nil
	}
	log.Info("authentication", "methods", o.Methods)
	if a.entra != nil {
		wctx, cancel := context.WithTimeout(ctx, warmupTimeout)
		defer cancel()
		if err := a.entra.keys.warmUp(wctx); err != nil {
			log.Warn("Entra ID signing keys not available yet; will retry when an Entra token arrives",
				"tenant", a.entra.tenant, "authority", a.entra.authority, "err", err)
		}
	}
	return a, nil
}

// maxAuthorization bounds the header Authenticate looks at. Entra access
// tokens stay well under it (group claims beyond 200 become an overage
// link); anything longer is refused before any parsing.
const maxAuthorization = 16 << 10

// Authenticate returns who sent a request with the given Authorization
// header value. Every error wraps ErrUnauthenticated and says what was
// wrong without repeating the token.
func (a *Authenticator) Authenticate(ctx context.Context, authorization string) (Principal, error) {
	if a.none {
		return Anonymous, nil
	}
	if authorization == "" {
		return Principal{}, unauthenticated("missing Authorization header")
	}
	if len(authorization) > maxAuthorization {
		return Principal{}, unauthenticated("Authorization header is %d bytes, more than the %d allowed", len(authorization), maxAuthorization)
	}
	scheme, rest, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// The scheme is not echoed: a client that forgot "Bearer " would
		// see its token in the message.
		return Principal{}, unauthenticated("Authorization header is not a Bearer token")
	}
	tok := strings.TrimLeft(rest, " ")
	if tok == "" {
		return Principal{}, unauthenticated("Authorization header says Bearer but carries no token")
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return Principal{}, unauthenticated("bearer token has a character at offset %d that no token has", i)
		}
	}
	if strings.HasPrefix(tok, IssuedPrefix) {
		if a.tokens == nil {
			return Principal{}, unauthenticated("issued (berth_) tokens are not accepted here: the server runs without --auth token")
		}
		return a.tokens.authenticate(ctx, tok)
	}
	if strings.Count(tok, ".") != 2 {
		return Principal{}, unauthenticated("bearer token is neither an issued berth_ token nor a JWT (header.payload.signature)")
	}
	if a.entra == nil {
		return Principal{}, unauthenticated("Entra ID tokens are not accepted here: the server runs without --auth entra")
	}
	return a.entra.authenticate(ctx, tok)
}

// claim quotes a value taken from a token for an error message, cut short
// so a hostile token cannot fill logs.
func claim(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Sprintf("%q", s)
}

package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/berthhq/berth/control/store"
)

// What makes an Entra principal an agent. Entra signs a user's delegated
// token and a managed identity's token with the same keys, for the same
// audience, so the signature alone lets any user of the tenant claim a
// host. The claims tell them apart, in v1 and v2 access tokens alike:
//
//   - idtyp: "app" in app-only tokens when the API asks for it as an
//     optional claim; Microsoft calls it the most accurate test. Any
//     other value ("user") is a user.
//   - scp: delegated permissions, present in every token a user's sign-in
//     produced and in no app-only token.
//   - sub and oid: an app-only token names its service principal in both;
//     a user's sub is a pairwise id per application, never its oid.
//     Microsoft's documented test when idtyp is absent is oid == sub.
//
// A token is app-only when all three agree. A managed identity's token is
// app-only and also carries xms_mirid, the resource id of the identity:
// the VM (system-assigned) or the user-assigned identity resource.

// agentScope is a parsed --entra-agent-scope: "" (none) or
// "/subscriptions/<sub>[/resourcegroups/<rg>]", lower-case.
type agentScope string

// ParseAgentScope checks an --entra-agent-scope value and returns it in
// the form principals are compared with (lower-case, no trailing slash).
// "" means no scope.
func ParseAgentScope(s string) (string, error) {
	sc, err := parseAgentScope(s)
	return string(sc), err
}

func parseAgentScope(raw string) (agentScope, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", nil
	}
	usage := fmt.Errorf("--entra-agent-scope %s: want /subscriptions/SUB or /subscriptions/SUB/resourceGroups/RG", claim(raw))
	segs := strings.Split(strings.TrimSuffix(s, "/"), "/")
	if segs[0] != "" || (len(segs) != 3 && len(segs) != 5) || !strings.EqualFold(segs[1], "subscriptions") {
		return "", usage
	}
	if !guid.MatchString(strings.ToLower(segs[2])) {
		return "", fmt.Errorf("--entra-agent-scope %s: the subscription id %s is not a GUID", claim(raw), claim(segs[2]))
	}
	if len(segs) == 5 {
		if !strings.EqualFold(segs[3], "resourcegroups") {
			return "", usage
		}
		if err := checkSegment(segs[4]); err != nil {
			return "", fmt.Errorf("--entra-agent-scope %s: resource group: %w", claim(raw), err)
		}
	}
	return agentScope(strings.ToLower(strings.Join(segs, "/"))), nil
}

// contains reports whether resource (canonical) lies in the scope.
func (sc agentScope) contains(resource string) bool {
	return resource != "" && strings.HasPrefix(resource, string(sc)+"/")
}

// maxResourceID bounds xms_mirid; ARM ids are far shorter.
const maxResourceID = 1024

// parseResourceID checks an xms_mirid claim and returns it lower-cased
// (ARM resource ids are case-insensitive, and Entra writes
// "resourcegroups" where ARM writes "resourceGroups"):
// /subscriptions/<guid>/resourcegroups/<rg>/providers/<namespace>/<type>/<name>[/<type>/<name>…].
func parseResourceID(s string) (string, error) {
	if len(s) > maxResourceID {
		return "", fmt.Errorf("is %d bytes, longer than any Azure resource id", len(s))
	}
	segs := strings.Split(s, "/")
	switch {
	case len(segs) < 9 || (len(segs)-7)%2 != 0 || segs[0] != "":
		return "", errors.New("is not /subscriptions/SUB/resourcegroups/RG/providers/NAMESPACE/TYPE/NAME")
	case !strings.EqualFold(segs[1], "subscriptions") || !strings.EqualFold(segs[3], "resourcegroups") || !strings.EqualFold(segs[5], "providers"):
		return "", errors.New("is not /subscriptions/SUB/resourcegroups/RG/providers/NAMESPACE/TYPE/NAME")
	case !guid.MatchString(strings.ToLower(segs[2])):
		return "", errors.New("names a subscription that is not a GUID")
	}
	for _, seg := range segs[1:] {
		if err := checkSegment(seg); err != nil {
			return "", err
		}
	}
	return strings.ToLower(s), nil
}

// checkSegment refuses path segments no ARM name has: empty, dot
// segments, and bytes that could change how the id reads or compares.
func checkSegment(seg string) error {
	if seg == "" || seg == "." || seg == ".." {
		return fmt.Errorf("has an empty or dot segment %s", claim(seg))
	}
	for i := 0; i < len(seg); i++ {
		if c := seg[i]; c <= ' ' || c == 0x7f || c == '%' || c == '?' || c == '#' || c == '\\' {
			return fmt.Errorf("segment %s has byte %#x, which no Azure name has", claim(seg), c)
		}
	}
	return nil
}

// appOnly says why a token is not app-only, or "" when it is.
func appOnly(c *entraClaims) string {
	switch {
	case c.IDType != "" && c.IDType != "app":
		return fmt.Sprintf("its idtyp is %s, not app", claim(c.IDType))
	case c.Scope != "":
		return "it carries delegated permissions (scp), which only a user's sign-in gives"
	case c.Subject != c.ObjectID:
		return "its sub is not its oid, as in every user's token (an app-only token names its service principal in both)"
	}
	return ""
}

// principalOf decides who a token whose signature, issuer, audience and
// lifetime were checked speaks for: an operator (the operator role, user
// or app alike), an agent (an app-only token, within the agent scope), or
// nobody (ErrForbidden).
func principalOf(c *entraClaims, operatorRole string, scope agentScope) (Principal, error) {
	p := Principal{Role: store.RoleOperator, Subject: c.ObjectID, Method: MethodEntra}
	if c.IssuedAt != nil {
		p.Issued = c.IssuedAt.Time
	}
	if c.ExpiresAt != nil {
		p.Expires = c.ExpiresAt.Time
	}
	if slices.Contains(c.Roles, operatorRole) {
		return p, nil
	}
	if why := appOnly(c); why != "" {
		return Principal{}, forbidden("Entra principal %s is not an agent: %s; hosts send their managed identity's token, and people need the app role %s to be operators", claim(c.ObjectID), why, operatorRole)
	}
	p.Role = store.RoleAgent
	if c.Resource != "" {
		res, err := parseResourceID(c.Resource)
		if err != nil {
			return Principal{}, forbidden("Entra principal %s is not an agent: its managed identity resource (xms_mirid) %s %v", claim(c.ObjectID), claim(c.Resource), err)
		}
		p.Resource = res
	}
	if scope == "" {
		return p, nil
	}
	if p.Resource == "" {
		return Principal{}, forbidden("Entra principal %s is not an agent here: its token names no managed identity resource (xms_mirid), and --entra-agent-scope %s admits only managed identities", claim(c.ObjectID), scope)
	}
	if !scope.contains(p.Resource) {
		// The resource is checked and at most maxResourceID bytes: quoted
		// whole, as the operator needs it.
		return Principal{}, forbidden("managed identity %q is outside --entra-agent-scope %s", p.Resource, scope)
	}
	return p, nil
}

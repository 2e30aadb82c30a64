package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/internal/testenv/entra"
)

// TestAgentClaims: who a genuine, well-formed Entra token speaks for,
// decided from its claims. A user of the tenant is never an agent, however
// the token is dressed; an operator is one by role; with a scope, only
// managed identities whose resource lies inside it are agents.
func TestAgentClaims(t *testing.T) {
	const sub = "0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab"
	const other = "9f8e7d6c-aaaa-4bbb-8ccc-1234567890ab"
	vm := entra.VMResourceID(sub, "rg-fleet", "vm-1")
	for _, scope := range []string{"", "/subscriptions/" + sub, "/subscriptions/" + strings.ToUpper(sub) + "/resourceGroups/RG-Fleet/"} {
		t.Run("scope="+scope, func(t *testing.T) {
			e := newEnv(t, []auth.Method{auth.MethodEntra}, func(o *auth.Options) { o.Entra.AgentScope = scope })
			fe := e.entra
			oid := "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
			mi := func(res string) map[string]any { return fe.ManagedIdentityClaims(audience, oid, res) }
			with := func(c map[string]any, f func(c map[string]any)) map[string]any { f(c); return c }
			agent := auth.Principal{Role: store.RoleAgent, Subject: oid, Method: auth.MethodEntra, Resource: strings.ToLower(vm)}
			operator := auth.Principal{Role: store.RoleOperator, Subject: oid, Method: auth.MethodEntra}
			// outside is the answer for an agent the scope must refuse.
			outside := func(p auth.Principal, msg string) (auth.Principal, string) {
				if scope == "" {
					return p, ""
				}
				return auth.Principal{}, msg
			}
			spAgent, spErr := outside(auth.Principal{Role: store.RoleAgent, Subject: oid, Method: auth.MethodEntra}, "names no managed identity resource")
			otherRG := entra.VMResourceID(sub, "rg-fleet2", "vm-9")
			otherAgent := auth.Principal{Role: store.RoleAgent, Subject: oid, Method: auth.MethodEntra, Resource: strings.ToLower(otherRG)}
			otherSub := entra.VMResourceID(other, "rg-fleet", "vm-1")
			otherSubAgent, otherSubErr := outside(auth.Principal{Role: store.RoleAgent, Subject: oid, Method: auth.MethodEntra, Resource: strings.ToLower(otherSub)}, "outside --entra-agent-scope")
			for _, tt := range []struct {
				name    string
				claims  map[string]any
				want    auth.Principal
				wantErr string
			}{
				{"managed identity v1", mi(vm), agent, ""},
				{"managed identity v2", with(mi(vm), func(c map[string]any) { c["iss"], c["ver"] = fe.V2Issuer(), "2.0" }), agent, ""},
				{"managed identity, upper-case resource", mi(strings.ToUpper(vm)), agent, ""},
				{"user-assigned identity", mi(entra.UserAssignedResourceID(sub, "rg-fleet", "id-web")),
					auth.Principal{Role: store.RoleAgent, Subject: oid, Method: auth.MethodEntra, Resource: strings.ToLower(entra.UserAssignedResourceID(sub, "rg-fleet", "id-web"))}, ""},
				{"idtyp absent, sub = oid", with(mi(vm), func(c map[string]any) { delete(c, "idtyp") }), agent, ""},
				{"service principal (no xms_mirid)", fe.Claims(audience, oid), spAgent, spErr},
				{"resource group whose name extends the scope's", mi(otherRG), func() auth.Principal {
					if strings.Contains(scope, "RG-Fleet") {
						return auth.Principal{}
					}
					return otherAgent
				}(), func() string {
					if strings.Contains(scope, "RG-Fleet") {
						return "outside --entra-agent-scope"
					}
					return ""
				}()},
				{"another subscription", mi(otherSub), otherSubAgent, otherSubErr},
				{"resource group in other case", mi(entra.VMResourceID(sub, "RG-FLEET", "vm-1")), agent, ""},
				{"user, delegated v1", fe.UserClaims(audience, oid), auth.Principal{}, "is not an agent: it carries delegated permissions (scp)"},
				{"user, delegated v2", fe.UserClaimsV2(audience, oid), auth.Principal{}, "is not an agent"},
				{"user claiming a VM's resource", with(fe.UserClaims(audience, oid), func(c map[string]any) { c["xms_mirid"] = vm }), auth.Principal{}, "is not an agent"},
				{"idtyp user", with(mi(vm), func(c map[string]any) { c["idtyp"] = "user" }), auth.Principal{}, `its idtyp is "user", not app`},
				{"idtyp App", with(mi(vm), func(c map[string]any) { c["idtyp"] = "App" }), auth.Principal{}, `its idtyp is "App"`},
				{"scp alone", with(mi(vm), func(c map[string]any) { c["scp"] = "Reports.Write" }), auth.Principal{}, "delegated permissions (scp)"},
				{"sub is not oid", with(mi(vm), func(c map[string]any) { c["sub"] = other }), auth.Principal{}, "its sub is not its oid"},
				{"no sub", with(mi(vm), func(c map[string]any) { delete(c, "sub"); delete(c, "idtyp") }), auth.Principal{}, "its sub is not its oid"},
				{"user with the operator role", with(fe.UserClaims(audience, oid), func(c map[string]any) { c["roles"] = []string{auth.DefaultOperatorRole} }), operator, ""},
				{"app with the operator role", with(fe.Claims(audience, oid), func(c map[string]any) { c["roles"] = []string{auth.DefaultOperatorRole} }), operator, ""},
				{"malformed xms_mirid", mi("/subscriptions/" + sub + "/resourcegroups/rg-fleet/../rg-x/providers/a/b/c"), auth.Principal{}, "xms_mirid"},
				{"xms_mirid not an ARM id", mi("vm-1"), auth.Principal{}, "is not /subscriptions/SUB"},
			} {
				t.Run(tt.name, func(t *testing.T) {
					got, err := e.auth(t, fe.Mint(tt.claims))
					checkErr(t, err, tt.wantErr)
					if err != nil && !errors.Is(err, auth.ErrForbidden) {
						t.Errorf("error %v is not ErrForbidden: the token is genuine, it just grants nothing", err)
					}
					if diff := cmp.Diff(tt.want, got, ignoreTimes); diff != "" {
						t.Errorf("principal (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}

// TestForbiddenIsCached: a genuine token that grants nothing is remembered
// like an accepted one, so a user retrying it in a loop costs no RSA
// verification each time, and is refused the same way every time.
func TestForbiddenIsCached(t *testing.T) {
	e := newEnv(t, []auth.Method{auth.MethodEntra}, nil)
	tok := e.entra.Mint(e.entra.UserClaims(audience, e.entra.Identity))
	_, first := e.auth(t, tok)
	_, second := e.auth(t, tok)
	if !errors.Is(first, auth.ErrForbidden) || !errors.Is(second, auth.ErrForbidden) || first != second {
		t.Errorf("errors %v, %v: want the same cached ErrForbidden", first, second)
	}
}

func TestAgentScopeOption(t *testing.T) {
	for _, tt := range []struct{ in, want, wantErr string }{
		{"", "", ""},
		{"/subscriptions/0B1C2D3E-AAAA-4BBB-8CCC-1234567890AB", "/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab", ""},
		{"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/My.RG_(1)/", "/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourcegroups/my.rg_(1)", ""},
		{"subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab", "", "want /subscriptions/SUB"},
		{"/subscriptions/prod", "", "is not a GUID"},
		{"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups", "", "want /subscriptions/SUB"},
		{"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/", "", "want /subscriptions/SUB"},
		{"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/rg/providers/x", "", "want /subscriptions/SUB"},
		{"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/groups/rg", "", "want /subscriptions/SUB"},
		{"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/..", "", "dot segment"},
		{"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/r g", "", "byte 0x20"},
		{"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/rg%2F..", "", "byte 0x25"},
	} {
		got, err := auth.ParseAgentScope(tt.in)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseAgentScope(%q) = %q, %v; want %q, %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	// New refuses a bad scope before serving anything.
	_, err := auth.New(t.Context(), auth.Options{Methods: []auth.Method{auth.MethodEntra},
		Entra: &auth.Entra{Tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47", Audience: audience, Authority: "http://127.0.0.1:1", AgentScope: "/subscriptions/x"}})
	checkErr(t, err, "--entra-agent-scope")
}

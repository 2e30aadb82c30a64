package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv/entra"
)

// TestEntraBindsOnFirstUse: a managed identity's token binds the identity
// to the first agent id it writes as; another identity cannot then write
// as that agent, nor the first identity as another agent.
func TestEntraBindsOnFirstUse(t *testing.T) {
	e := entra.Start(t, entra.Options{})
	const aud = "api://berth-control"
	f := newFixture(t, fixtureOptions{
		Methods: []auth.Method{auth.MethodEntra, auth.MethodToken},
		Entra:   &auth.Entra{Tenant: e.Tenant, Audience: aud, Authority: e.URL},
	})
	first := e.Mint(e.Claims(aud, "11111111-1111-4111-8111-111111111111"))
	second := e.Mint(e.Claims(aud, "22222222-2222-4222-8222-222222222222"))

	f.ack(t, first, "vm-e", heartbeat(1, "Healthy", nil))
	f.ack(t, first, "vm-e", heartbeat(2, "Healthy", nil)) // cached binding

	for _, tt := range []struct {
		name, token, agent string
	}{
		{"another identity as the bound agent", second, "vm-e"},
		{"the bound identity as another agent", first, "vm-f"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.post(t, tt.token, batchJSON(t, tt.agent, heartbeat(3, "Healthy", nil)), nil)
			if r.Status != http.StatusForbidden {
				t.Fatalf("status %d, want 403: %s", r.Status, r.Body)
			}
			e := r.wireError(t)
			t.Logf("%s: %s", e.Code, e.Message)
			if e.Code != wire.CodeForbidden || !contains(e.Message, tt.agent) {
				t.Errorf("error %+v: want forbidden naming %s", e, tt.agent)
			}
		})
	}
	// The second identity may bind itself to a fresh agent id.
	f.ack(t, second, "vm-g", heartbeat(1, "Healthy", nil))
	// An Entra agent is not an operator.
	if r := f.do(t, request{Path: "/v1/hosts", Token: first}); r.Status != http.StatusForbidden {
		t.Errorf("entra agent lists hosts: %d", r.Status)
	}
	// Issued tokens still work beside Entra.
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", nil))
	var page wire.HostPage
	f.getJSON(t, "/v1/hosts", &page)
	if page.Total != 3 {
		t.Errorf("hosts: %+v", page)
	}
}

// TestAuthNone: the demo mode lets anyone write as any host and read.
func TestAuthNone(t *testing.T) {
	f := newFixture(t, fixtureOptions{Methods: []auth.Method{auth.MethodNone}})
	f.ack(t, "", "vm-x", heartbeat(1, "Healthy", nil))
	f.ack(t, "", "vm-y", heartbeat(1, "Healthy", nil))
	if r := f.do(t, request{Path: "/v1/hosts/vm-x"}); r.Status != http.StatusOK {
		t.Errorf("read without a token under --auth none: %d %s", r.Status, r.Body)
	}
}

// entraFixture is a server accepting Entra tokens of a fake tenant, with
// agents limited to scope ("" for none).
func entraFixture(t *testing.T, scope string) (*fixture, *entra.Server) {
	t.Helper()
	e := entra.Start(t, entra.Options{})
	f := newFixture(t, fixtureOptions{
		Methods: []auth.Method{auth.MethodEntra, auth.MethodToken},
		Entra:   &auth.Entra{Tenant: e.Tenant, Audience: entraAudience, Authority: e.URL, AgentScope: scope},
	})
	return f, e
}

const entraAudience = "api://berth-control"

// refused posts a report as agent with token and wants 403.
func (f *fixture) refused(t *testing.T, token, agent string, seq uint64, say string) {
	t.Helper()
	r := f.post(t, token, batchJSON(t, agent, heartbeat(seq, "Healthy", nil)), nil)
	if r.Status != http.StatusForbidden {
		t.Fatalf("report of %s: status %d, want 403: %s", agent, r.Status, r.Body)
	}
	if e := r.wireError(t); e.Code != wire.CodeForbidden || !contains(e.Message, say) {
		t.Errorf("report of %s: %+v, want forbidden saying %q", agent, e, say)
	} else {
		t.Logf("%s: %s", agent, e.Message)
	}
}

// TestEntraUserTokenIsNeverAgent is the attack of issue 9 item 9: any user
// of the tenant gets a token for the control endpoint's audience (az
// account get-access-token --resource api://berth-control) and writes as a
// VM's id before the VM does, which then can never report. A user's token
// is refused as an agent with 403, whatever it claims, and the VM id stays
// free for the VM's own managed identity.
func TestEntraUserTokenIsNeverAgent(t *testing.T) {
	f, e := entraFixture(t, "")
	const victim = "4a1b6c2e-0000-4000-8000-00000000beef"
	user := "77777777-7777-4777-8777-777777777777"
	withMirid := e.UserClaims(entraAudience, user)
	withMirid["xms_mirid"] = e.ResourceID
	for name, tok := range map[string]string{
		"delegated v1":               e.Mint(e.UserClaims(entraAudience, user)),
		"delegated v2":               e.Mint(e.UserClaimsV2(entraAudience, user)),
		"claiming the VM's resource": e.Mint(withMirid),
	} {
		t.Run(name, func(t *testing.T) { f.refused(t, tok, victim, 1, "is not an agent") })
	}
	// The VM's own managed identity binds its id.
	vm := e.Mint(e.ManagedIdentityClaims(entraAudience, e.Identity, e.ResourceID))
	f.ack(t, vm, victim, heartbeat(1, "Healthy", nil))
	// A user who is an operator reads, and still cannot write.
	opClaims := e.UserClaims(entraAudience, user)
	opClaims["roles"] = []string{auth.DefaultOperatorRole}
	op := e.Mint(opClaims)
	if r := f.do(t, request{Path: "/v1/hosts/" + victim, Token: op}); r.Status != http.StatusOK {
		t.Errorf("Entra operator reads the host: %d %s", r.Status, r.Body)
	}
	f.refused(t, op, victim, 2, "cannot write reports")
}

// TestEntraAgentScope: with --entra-agent-scope only managed identities
// whose resource lies in the subscription or resource group may report.
func TestEntraAgentScope(t *testing.T) {
	const sub = "0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab"
	f, e := entraFixture(t, "/subscriptions/"+sub+"/resourceGroups/rg-fleet")
	mi := func(oid, res string) string { return e.Mint(e.ManagedIdentityClaims(entraAudience, oid, res)) }
	f.ack(t, mi("11111111-1111-4111-8111-111111111111", entra.VMResourceID(sub, "rg-fleet", "vm-1")), "vm-1", heartbeat(1, "Healthy", nil))
	f.ack(t, mi("22222222-2222-4222-8222-222222222222", entra.UserAssignedResourceID(sub, "RG-Fleet", "id-web")), "vm-2", heartbeat(1, "Healthy", nil))
	f.refused(t, mi("33333333-3333-4333-8333-333333333333", entra.VMResourceID(sub, "rg-dev", "vm-3")), "vm-3", 1, "outside --entra-agent-scope")
	f.refused(t, mi("44444444-4444-4444-8444-444444444444", entra.VMResourceID(sub, "rg-fleet-2", "vm-4")), "vm-4", 1, "outside --entra-agent-scope")
	f.refused(t, mi("55555555-5555-4555-8555-555555555555", entra.VMResourceID("9f8e7d6c-aaaa-4bbb-8ccc-1234567890ab", "rg-fleet", "vm-5")), "vm-5", 1, "outside --entra-agent-scope")
	f.refused(t, e.Mint(e.Claims(entraAudience, "66666666-6666-4666-8666-666666666666")), "vm-6", 1, "names no managed identity resource")
	var page wire.HostPage
	f.getJSON(t, "/v1/hosts", &page)
	if page.Total != 2 {
		t.Errorf("%d hosts stored, want the 2 in scope: %+v", page.Total, page)
	}
}

// TestEntraBindsResource: a managed identity's host is bound to its
// resource (xms_mirid): another resource cannot write as the host, nor the
// resource as another host; a resource built again (new identity, new VM
// id) reports under its new id while its old identity's tokens stay
// refused; a host bound by object id before keeps reporting once its
// token names the resource.
func TestEntraBindsResource(t *testing.T) {
	f, e := entraFixture(t, "")
	sub := e.Subscription
	vm1, vm2 := entra.VMResourceID(sub, "rg", "vm1"), entra.VMResourceID(sub, "rg", "vm2")
	o1, o2, o9 := "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", "99999999-9999-4999-8999-999999999999"
	old := e.Mint(e.ManagedIdentityClaims(entraAudience, o1, vm1))
	f.ack(t, old, "host-1", heartbeat(1, "Healthy", nil))
	f.ack(t, old, "host-1", heartbeat(2, "Healthy", nil))
	f.refused(t, e.Mint(e.ManagedIdentityClaims(entraAudience, o9, vm2)), "host-1", 3, "bound to another identity (azure:/subscriptions/")
	f.refused(t, old, "host-2", 1, "is bound to host host-1")

	// vm1 deleted and created again from its template: a new identity
	// and a new VM id, under the same resource id. Its token is issued
	// after the old binding was made.
	time.Sleep(1100 * time.Millisecond) // iat has whole seconds
	f.ack(t, e.Mint(e.ManagedIdentityClaims(entraAudience, o2, vm1)), "host-1b", heartbeat(1, "Healthy", nil))
	f.refused(t, old, "host-1", 3, "is bound to agent \"host-1b\"")

	// Bound by object id (a token without xms_mirid) before: the same
	// identity's managed identity token carries the binding over.
	o5 := "55555555-5555-4555-8555-555555555555"
	f.ack(t, e.Mint(e.Claims(entraAudience, o5)), "host-5", heartbeat(1, "Healthy", nil))
	f.ack(t, e.Mint(e.ManagedIdentityClaims(entraAudience, o5, entra.VMResourceID(sub, "rg", "vm5"))), "host-5", heartbeat(2, "Healthy", nil))
	f.refused(t, e.Mint(e.ManagedIdentityClaims(entraAudience, o9, entra.VMResourceID(sub, "rg", "vm5"))), "host-6", 1, "is bound to agent \"host-5\"")
}

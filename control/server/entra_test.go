package server_test

import (
	"net/http"
	"testing"

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

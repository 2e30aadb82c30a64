package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/internal/testenv/entra"
)

// TestManagedIdentityEndToEnd proves the fake Entra is good enough for the
// team's end-to-end tests: azidentity's ManagedIdentityCredential, pointed
// at it the way an agent on an App Service-like host would be, gets tokens
// that Authenticate accepts.
func TestManagedIdentityEndToEnd(t *testing.T) {
	fe := entra.Start(t, entra.Options{})
	fe.UseFor(t)
	const clientID = "0b5e2a35-7d3c-4d0e-9d6f-3f1f4a2b9c11"
	const userOID = "5d1a7e0c-1111-4222-8333-944445555666"
	fe.AddIdentity(clientID, userOID)
	a, err := auth.New(context.Background(), auth.Options{
		Methods: []auth.Method{auth.MethodEntra},
		Entra:   &auth.Entra{Tenant: fe.Tenant, Audience: audience, Authority: fe.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		id       azidentity.ManagedIDKind
		want     string
		resource string
	}{
		{"system-assigned", nil, fe.Identity, strings.ToLower(fe.ResourceID)},
		{"user-assigned", azidentity.ClientID(clientID), userOID, strings.ToLower(entra.UserAssignedResourceID(fe.Subscription, "berth-test", "id-"+userOID))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: tt.id})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{audience + "/.default"}})
			if err != nil {
				t.Fatalf("GetToken: %v", err)
			}
			got, err := a.Authenticate(ctx, "Bearer "+tok.Token)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			want := auth.Principal{Role: store.RoleAgent, Subject: tt.want, Method: auth.MethodEntra, Resource: tt.resource}
			if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
		})
	}
	reqs := fe.TokenRequests()
	want := []entra.TokenRequest{
		{Resource: audience, Header: fe.IdentityHeader, Status: 200},
		{Resource: audience, ClientID: clientID, Header: fe.IdentityHeader, Status: 200},
	}
	if diff := cmp.Diff(want, reqs); diff != "" {
		t.Errorf("token requests (-want +got):\n%s", diff)
	}
}

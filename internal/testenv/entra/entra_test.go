package entra

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestEntraFake(t *testing.T) {
	e := Start(t, Options{Roles: []string{"Berth.Operator"}})
	get := func(u string, header string, v any) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if header != "" {
			req.Header.Set("X-IDENTITY-HEADER", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil && resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if st := get(e.URL+"/"+e.Tenant+"/v2.0/.well-known/openid-configuration", "", &doc); st != 200 || doc.Issuer != e.V2Issuer() {
		t.Fatalf("discovery: %d %+v", st, doc)
	}
	e.Rotate(t)
	var set struct{ Keys []map[string]string }
	if st := get(doc.JWKSURI, "", &set); st != 200 || len(set.Keys) != 2 || set.Keys[1]["kid"] != e.KeyID() {
		t.Fatalf("JWKS: %d %+v", st, set)
	}
	if e.JWKSRequests() != 1 || e.DiscoveryRequests() != 1 {
		t.Errorf("counts: jwks %d discovery %d", e.JWKSRequests(), e.DiscoveryRequests())
	}
	tokenURL := func(extra string) string {
		return e.IdentityEndpoint + "?api-version=2019-08-01&resource=" + url.QueryEscape("api://x/.default") + extra
	}
	if st := get(tokenURL(""), "wrong", nil); st != http.StatusUnauthorized {
		t.Errorf("wrong identity header: %d", st)
	}
	if st := get(tokenURL("&client_id=nobody"), e.IdentityHeader, nil); st != http.StatusBadRequest {
		t.Errorf("unknown user-assigned identity: %d", st)
	}
	var ans map[string]string
	if st := get(tokenURL(""), e.IdentityHeader, &ans); st != 200 {
		t.Fatalf("token: %d", st)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(ans["access_token"], claims); err != nil {
		t.Fatal(err)
	}
	if claims["aud"] != "api://x" || claims["iss"] != e.V1Issuer() || claims["oid"] != e.Identity || claims["tid"] != e.Tenant {
		t.Errorf("claims: %v", claims)
	}
	if roles, _ := claims["roles"].([]any); len(roles) != 1 || roles[0] != "Berth.Operator" {
		t.Errorf("roles: %v", claims["roles"])
	}
	// A managed identity's token is app-only and names its resource.
	if claims["idtyp"] != "app" || claims["sub"] != e.Identity || claims["scp"] != nil || claims["xms_mirid"] != e.ResourceID {
		t.Errorf("managed identity claims: %v", claims)
	}
	e.AddIdentity("client-1", "ua-oid")
	if st := get(tokenURL("&client_id=client-1"), e.IdentityHeader, &ans); st != 200 {
		t.Fatalf("user-assigned token: %d", st)
	}
	claims = jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(ans["access_token"], claims); err != nil {
		t.Fatal(err)
	}
	if want := UserAssignedResourceID(e.Subscription, "berth-test", "id-ua-oid"); claims["oid"] != "ua-oid" || claims["xms_mirid"] != want {
		t.Errorf("user-assigned claims: %v, want xms_mirid %s", claims, want)
	}
	// A user's token looks like one.
	u := e.UserClaims("api://x", "user-oid")
	if u["scp"] == nil || u["sub"] == "user-oid" || u["idtyp"] != nil {
		t.Errorf("user claims: %v", u)
	}
	e.SetDown(true)
	if st := get(doc.JWKSURI, "", nil); st != http.StatusServiceUnavailable {
		t.Errorf("down: %d", st)
	}
}

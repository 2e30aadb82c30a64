package auth_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/testenv/entra"
)

// mintHeader takes a valid token and replaces its header. The signature
// no longer matches, so only checks made before the signature can pass
// or refuse it meaningfully.
func mintHeader(t *testing.T, fe *entra.Server, change func(h map[string]any)) string {
	t.Helper()
	h := map[string]any{"alg": "RS256", "typ": "JWT", "kid": fe.KeyID()}
	change(h)
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(fe.Mint(fe.Claims(audience, fe.Identity)), ".")
	return base64.RawURLEncoding.EncodeToString(b) + "." + parts[1] + "." + parts[2]
}

// mintAlg is mintHeader with another alg.
func mintAlg(t *testing.T, fe *entra.Server, alg string) string {
	t.Helper()
	return mintHeader(t, fe, func(h map[string]any) { h["alg"] = alg })
}

// tamper replaces a signed token's claims, keeping its signature.
func tamper(token string, claims map[string]any) string {
	b, _ := json.Marshal(claims)
	parts := strings.Split(token, ".")
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

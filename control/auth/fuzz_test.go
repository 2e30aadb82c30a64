package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
)

// FuzzAuthenticate feeds arbitrary Authorization headers through both
// token paths. It must never panic, every error must wrap
// ErrUnauthenticated, and whatever it accepts must be a sane principal.
func FuzzAuthenticate(f *testing.F) {
	f.Add("")
	f.Add("Bearer")
	f.Add("Basic x")
	f.Add("Bearer ...")
	f.Add("Bearer a.b.c")
	f.Add("Bearer " + agentSecret)
	f.Add("Bearer " + revokedSecret)
	f.Add("bearer berth_")
	f.Add("Bearer eyJhbGciOiJub25lIn0.e30.")
	f.Add("Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.e30.AAAA")
	e := newEnv(f, []auth.Method{auth.MethodEntra, auth.MethodToken}, nil)
	fe := e.entra
	f.Add("Bearer " + fe.Mint(fe.Claims(audience, fe.Identity)))
	f.Add("Bearer " + fe.MintNone(fe.Claims(audience, fe.Identity)))
	f.Add("Bearer " + fe.MintHS256(fe.Claims(audience, fe.Identity)))
	for _, h := range fe.HostileTokens(f, audience, fe.Identity) {
		f.Add("Bearer " + h.Token)
	}
	f.Fuzz(func(t *testing.T, header string) {
		p, err := e.a.Authenticate(context.Background(), header)
		if err != nil {
			if !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("%v does not wrap ErrUnauthenticated", err)
			}
			if tok := strings.TrimPrefix(header, "Bearer "); len(tok) >= 32 && strings.Contains(err.Error(), tok) {
				t.Fatalf("error repeats the token: %v", err)
			}
			return
		}
		if p.Subject == "" || p.Role != store.RoleAgent && p.Role != store.RoleOperator {
			t.Fatalf("accepted %q as %+v", header, p)
		}
	})
}

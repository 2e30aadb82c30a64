package auth_test

import (
	"context"
	"testing"

	"github.com/berthhq/berth/control/auth"
)

// The endpoint must take at least 5,000 requests a second; these show
// what authentication costs of that.

func BenchmarkAuthenticateIssuedCached(b *testing.B) {
	e := newEnv(b, []auth.Method{auth.MethodEntra, auth.MethodToken}, nil)
	ctx := context.Background()
	h := "Bearer " + agentSecret
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.a.Authenticate(ctx, h); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAuthenticateEntra(b *testing.B) {
	e := newEnv(b, []auth.Method{auth.MethodEntra, auth.MethodToken}, nil)
	ctx := context.Background()
	h := "Bearer " + e.entra.Mint(e.entra.Claims(audience, e.entra.Identity))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.a.Authenticate(ctx, h); err != nil {
				b.Fatal(err)
			}
		}
	})
}

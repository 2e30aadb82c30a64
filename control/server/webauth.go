package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
)

// OperatorAuthorizer returns the check the web page runs on every request:
// an operator token in the Authorization header, else in the cookie named
// cookie. It lives here so the page and the API accept exactly the same
// operators.
func OperatorAuthorizer(a Authenticator, cookie string) func(*http.Request) error {
	return func(r *http.Request) error {
		h := r.Header.Get("Authorization")
		if h == "" {
			if c, err := r.Cookie(cookie); err == nil && c.Value != "" {
				h = "Bearer " + c.Value
			}
		}
		p, err := a.Authenticate(r.Context(), h)
		if err != nil {
			return err
		}
		return operatorOnly(p)
	}
}

// OperatorLogin returns the check of the web page's login form: token
// must be an operator's.
func OperatorLogin(a Authenticator) func(ctx context.Context, token string) error {
	return func(ctx context.Context, token string) error {
		p, err := a.Authenticate(ctx, "Bearer "+token)
		if err != nil {
			return err
		}
		return operatorOnly(p)
	}
}

func operatorOnly(p auth.Principal) error {
	if p.Method != auth.MethodNone && p.Role != store.RoleOperator {
		return fmt.Errorf("%w: a %s token cannot see the fleet; log in with an operator token (berth-control token issue --operator NAME)", auth.ErrUnauthenticated, p.Role)
	}
	return nil
}

package upstream

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/cas"
)

type challengeCase struct {
	name   string
	header []string
	want   []challenge
}

func ch(scheme string, kv ...string) challenge {
	c := challenge{scheme: scheme, params: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		c.params[kv[i]] = kv[i+1]
	}
	return c
}

var challengeCases = []challengeCase{
	{"docker hub", []string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`},
		[]challenge{ch("bearer", "realm", "https://auth.docker.io/token", "service", "registry.docker.io", "scope", "repository:library/busybox:pull")}},
	{"acr", []string{`Bearer realm="https://r.azurecr.io/oauth2/token",service="r.azurecr.io"`},
		[]challenge{ch("bearer", "realm", "https://r.azurecr.io/oauth2/token", "service", "r.azurecr.io")}},
	{"basic", []string{`Basic realm="Registry Realm"`}, []challenge{ch("basic", "realm", "Registry Realm")}},
	{"scheme case and spaces", []string{`  BEARER   Realm = "x" ,  Service=y  `}, []challenge{ch("bearer", "realm", "x", "service", "y")}},
	{"two in one header", []string{`Basic realm="a", Bearer realm="b",service="s"`},
		[]challenge{ch("basic", "realm", "a"), ch("bearer", "realm", "b", "service", "s")}},
	{"two headers", []string{`Basic realm="a"`, `Bearer realm="b"`}, []challenge{ch("basic", "realm", "a"), ch("bearer", "realm", "b")}},
	{"escaped quote", []string{`Bearer realm="a\"b",scope="x y"`}, []challenge{ch("bearer", "realm", `a"b`, "scope", "x y")}},
	{"comma in quotes", []string{`Bearer realm="https://h/t",scope="repository:a:pull,push"`},
		[]challenge{ch("bearer", "realm", "https://h/t", "scope", "repository:a:pull,push")}},
	{"unquoted url", []string{`Bearer realm=https://h/token,service=h`}, []challenge{ch("bearer", "realm", "https://h/token", "service", "h")}},
	{"token68", []string{`Negotiate abc/def==, Bearer realm="r"`}, []challenge{ch("negotiate"), ch("bearer", "realm", "r")}},
	{"token68 single pad", []string{`Basic dXNlcjpwYXNz=`}, []challenge{ch("basic")}},
	{"duplicate param keeps first", []string{`Bearer realm="a",realm="b"`}, []challenge{ch("bearer", "realm", "a")}},
	{"unterminated quote", []string{`Bearer realm="abc`}, []challenge{ch("bearer", "realm", "abc")}},
	{"junk", []string{`@@@, ===, "x"`}, nil},
	{"empty", []string{``}, nil},
	{"param before scheme", []string{`realm="x", Bearer realm="y"`}, []challenge{ch("bearer", "realm", "y")}},
	{"junk after param", []string{`Bearer realm="a" junk, service="s"`}, []challenge{ch("bearer", "realm", "a", "service", "s")}},
	{"too long", []string{"Bearer realm=\"" + strings.Repeat("a", maxChallengeHeader) + "\""}, nil},
}

func TestParseChallenges(t *testing.T) {
	for _, tc := range challengeCases {
		got := parseChallenges(tc.header)
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(challenge{})); diff != "" {
			t.Errorf("%s: %q (-want +got):\n%s", tc.name, tc.header, diff)
		}
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, tc := range challengeCases {
		f.Add(strings.Join(tc.header, "\n"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs := parseChallenges(strings.Split(s, "\n"))
		if len(cs) > maxChallenges {
			t.Fatalf("%d challenges, the bound is %d", len(cs), maxChallenges)
		}
		for _, c := range cs {
			if c.scheme == "" || c.scheme != strings.ToLower(c.scheme) {
				t.Fatalf("scheme %q", c.scheme)
			}
			if len(c.params) > maxChallengeParams {
				t.Fatalf("%d params", len(c.params))
			}
			for k := range c.params {
				if k == "" || k != strings.ToLower(k) {
					t.Fatalf("param key %q", k)
				}
			}
		}
		// What a challenge holds only ever comes out through realmURL,
		// which must not accept anything but http(s) URLs.
		if bc, ok := bearerChallenge(cs); ok {
			if u, err := realmURL(bc); err == nil && u.Scheme != "https" && u.Scheme != "http" {
				t.Fatalf("realm %q accepted with scheme %q", bc.params["realm"], u.Scheme)
			}
		}
	})
}

type errorBodyCase struct {
	name   string
	status int
	body   string
	want   []ErrorDetail
	class  error
}

var errorBodyCases = []errorBodyCase{
	{"manifest unknown", 404, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}`,
		[]ErrorDetail{{Code: "MANIFEST_UNKNOWN", Message: "manifest unknown", Detail: json.RawMessage(`{"Tag":"x"}`)}}, ErrNotFound},
	{"blob unknown", 404, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`,
		[]ErrorDetail{{Code: "BLOB_UNKNOWN", Message: "blob unknown to registry"}}, ErrNotFound},
	{"unauthorized", 401, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`,
		[]ErrorDetail{{Code: "UNAUTHORIZED", Message: "authentication required"}}, ErrUnauthorized},
	{"denied", 403, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`,
		[]ErrorDetail{{Code: "DENIED", Message: "requested access to the resource is denied"}}, ErrDenied},
	{"rate limit", 429, `{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}`,
		[]ErrorDetail{{Code: "TOOMANYREQUESTS", Message: "You have reached your pull rate limit."}}, ErrUpstreamUnavailable},
	{"name invalid", 400, `{"errors":[{"code":"NAME_INVALID","message":"invalid repository name"}]}`,
		[]ErrorDetail{{Code: "NAME_INVALID", Message: "invalid repository name"}}, ErrInvalid},
	{"code decides on 400", 400, `{"errors":[{"code":"NAME_UNKNOWN"}]}`, []ErrorDetail{{Code: "NAME_UNKNOWN"}}, ErrNotFound},
	{"lower-case code", 418, `{"errors":[{"code":"denied"}]}`, []ErrorDetail{{Code: "DENIED"}}, ErrDenied},
	{"html", 502, `<html>bad gateway</html>`, nil, ErrUpstreamUnavailable},
	{"empty", 500, ``, nil, ErrUpstreamUnavailable},
	{"control characters", 404, "{\"errors\":[{\"code\":\"X\\nY\",\"message\":\"a\\u001b[31mb\\r\\nc\"}]}",
		[]ErrorDetail{{Code: "UNKNOWN", Message: "a [31mb  c"}}, ErrNotFound},
	{"wrong types", 404, `{"errors":[{"code":7,"message":["x"]},{"code":"BLOB_UNKNOWN"}]}`, []ErrorDetail{{Code: "BLOB_UNKNOWN"}}, ErrNotFound},
	{"errors not a list", 400, `{"errors":{"code":"X"}}`, nil, ErrInvalid},
	{"redirect status", 302, `{}`, nil, ErrUpstreamUnavailable},
}

func TestParseErrorBody(t *testing.T) {
	for _, tc := range errorBodyCases {
		got := parseErrorBody([]byte(tc.body))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
		if class := classify(tc.status, got); class != tc.class {
			t.Errorf("%s: class %v, want %v", tc.name, class, tc.class)
		}
	}
	if !errors.Is(ErrNotFound, cas.ErrNotFound) || !errors.Is(ErrUpstreamUnavailable, cas.ErrUnavailable) {
		t.Error("the error classes do not wrap cas's")
	}
	many := `{"errors":[` + strings.Repeat(`{"code":"X"},`, 100) + `{"code":"X"}]}`
	if got := parseErrorBody([]byte(many)); len(got) != maxErrorEntries {
		t.Errorf("%d entries kept, want %d", len(got), maxErrorEntries)
	}
	long := `{"errors":[{"code":"X","message":"` + strings.Repeat("é", 2000) + `"}]}`
	if got := parseErrorBody([]byte(long)); len(got[0].Message) > maxErrorMessage+len("…") || !utf8.ValidString(got[0].Message) {
		t.Errorf("long message kept as %d bytes", len(got[0].Message))
	}
}

func FuzzParseErrorBody(f *testing.F) {
	for _, tc := range errorBodyCases {
		f.Add(tc.status, tc.body)
	}
	f.Fuzz(func(t *testing.T, status int, body string) {
		details := parseErrorBody([]byte(body))
		if len(details) > maxErrorEntries {
			t.Fatalf("%d entries", len(details))
		}
		for _, d := range details {
			if len(d.Code) > maxErrorCode || len(d.Message) > maxErrorMessage+len("…") || len(d.Detail) > maxErrorDetail {
				t.Fatalf("unbounded entry %+v", d)
			}
			if strings.ContainsAny(d.Code+d.Message, "\r\n\x1b\x00") {
				t.Fatalf("control characters kept: %q %q", d.Code, d.Message)
			}
		}
		err := &RegistryError{Status: status, Errors: details, kind: classify(status, details)}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("error message spans lines: %q", err.Error())
		}
		switch err.kind {
		case ErrNotFound, ErrUnauthorized, ErrDenied, ErrUpstreamUnavailable, ErrInvalid:
		default:
			t.Fatalf("class %v", err.kind)
		}
	})
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{"bytes 0-9/10", 0, 9, 10, true},
		{"bytes 5-9/10", 5, 9, 10, true},
		{"bytes 5-9/*", 5, 9, -1, true},
		{"bytes 5-10/10", 0, 0, 0, false},
		{"bytes 9-5/10", 0, 0, 0, false},
		{"bytes -1-5/10", 0, 0, 0, false},
		{"items 0-9/10", 0, 0, 0, false},
		{"bytes 0-9", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		s, e, tot, ok := parseContentRange(tc.in)
		if s != tc.start || e != tc.end || tot != tc.total || ok != tc.ok {
			t.Errorf("%q: got %d %d %d %v", tc.in, s, e, tot, ok)
		}
	}
}

func TestSameSite(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"auth.docker.io", "registry-1.docker.io", true},
		{"r.azurecr.io", "r.azurecr.io", true},
		{"r.azurecr.io", "evil.azurecr.io", false}, // one tenant each
		{"a.example.com", "example.org", false},
		{"registry.gitlab.com", "gitlab.com", true},
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "localhost", false},
		{"10.0.0.1", "10.0.0.2", false},
	} {
		if got := sameSite(tc.a, tc.b); got != tc.want {
			t.Errorf("sameSite(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

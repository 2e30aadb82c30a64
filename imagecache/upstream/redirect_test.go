package upstream

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berthhq/berth/imagecache/cas"
)

// allowLoopbackRedirects lets redirects reach loopback servers for the
// rest of the test: the stand-ins for storage accounts are all local.
func allowLoopbackRedirects(t *testing.T) {
	t.Helper()
	allowLoopbackHops.Store(true)
	t.Cleanup(func() { allowLoopbackHops.Store(false) })
}

func TestRedirectTarget(t *testing.T) {
	httpsBase, _ := url.Parse("https://registry.example")
	loopBase, _ := url.Parse("http://127.0.0.1:5000")
	for _, tc := range []struct {
		name     string
		base     *url.URL
		location string
		want     string // "" when refused
		own      bool
	}{
		{"storage over https", httpsBase, "https://storage.example.net/blob?sig=x", "https://storage.example.net/blob?sig=x", false},
		{"relative: the registry itself", httpsBase, "/v2/r/blobs/x2", "https://registry.example/v2/r/blobs/x2", true},
		{"user info dropped", httpsBase, "https://u:p@storage.example.net/b", "https://storage.example.net/b", false},
		{"the configured loopback registry itself", loopBase, "/same-host/blob", "http://127.0.0.1:5000/same-host/blob", true},
		{"the loopback registry, absolute", loopBase, "http://127.0.0.1:5000/b", "http://127.0.0.1:5000/b", true},
		{"another port of the loopback host", loopBase, "http://127.0.0.1:8765/healthz", "", false},
		{"another port of the loopback host, https", loopBase, "https://127.0.0.1:8765/healthz", "", false},
		{"loopback from a public registry", httpsBase, "http://127.0.0.1:8080/healthz", "", false},
		{"loopback over https", httpsBase, "https://127.0.0.1/x", "", false},
		{"loopback 127.1.2.3", httpsBase, "https://127.1.2.3/x", "", false},
		{"localhost", httpsBase, "https://localhost/x", "", false},
		{"localhost, upper case, trailing dot", httpsBase, "https://LocalHost./x", "", false},
		{"a .localhost name", httpsBase, "https://evil.localhost/x", "", false},
		{"IPv6 loopback", httpsBase, "https://[::1]/x", "", false},
		{"IPv4-mapped loopback", httpsBase, "https://[::ffff:127.0.0.1]/x", "", false},
		{"IMDS", httpsBase, "https://169.254.169.254/metadata", "", false},
		{"Azure wire server", httpsBase, "https://168.63.129.16/machine", "", false},
		{"private 10/8", httpsBase, "https://10.1.2.3/x", "", false},
		{"private 192.168/16", httpsBase, "https://192.168.0.10/x", "", false},
		{"private 172.16/12", httpsBase, "https://172.20.0.1/x", "", false},
		{"carrier-grade NAT", httpsBase, "https://100.64.1.1/x", "", false},
		{"unspecified", httpsBase, "https://0.0.0.0/x", "", false},
		{"IPv6 unique local", httpsBase, "https://[fd00::1]/x", "", false},
		{"IPv6 link-local", httpsBase, "https://[fe80::1]/x", "", false},
		{"a public IP over https", httpsBase, "https://20.60.1.2/x", "https://20.60.1.2/x", false},
		{"plain http elsewhere", httpsBase, "http://storage.example.net/b", "", false},
		{"https registry to its own host on http", httpsBase, "http://registry.example/b", "", false},
		{"not http", httpsBase, "file:///etc/passwd", "", false},
		{"gopher", httpsBase, "gopher://storage.example.net/", "", false},
		{"empty", httpsBase, "", "", false},
		{"garbage", httpsBase, "http://[::1", "", false},
		{"no host", httpsBase, "https:///x", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, own, err := redirectTarget(tc.base, tc.base, tc.location)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("followed to %s; want refused", got)
			case tc.want != "" && err != nil:
				t.Errorf("refused: %v; want %s", err, tc.want)
			case tc.want != "" && (got.String() != tc.want || own != tc.own):
				t.Errorf("got %s own=%v, want %s own=%v", got, own, tc.want, tc.own)
			}
		})
	}
}

func TestPublicIP(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"20.60.1.2", true}, {"8.8.8.8", true}, {"2606:4700::1111", true},
		{"127.0.0.1", false}, {"127.255.255.254", false}, {"::1", false}, {"::ffff:127.0.0.1", false},
		{"10.0.0.1", false}, {"172.16.0.1", false}, {"192.168.1.1", false}, {"100.64.0.1", false},
		{"169.254.169.254", false}, {"168.63.129.16", false}, {"0.0.0.0", false}, {"0.1.2.3", false},
		{"224.0.0.1", false}, {"255.255.255.255", false}, {"240.0.0.1", false}, {"198.18.0.1", false},
		{"fd12::1", false}, {"fe80::1", false}, {"ff02::1", false}, {"::", false},
		{"64:ff9b::7f00:1", false}, {"2002:7f00:1::", false}, {"2001:0:7f00:1::", false},
	} {
		if got := publicIP(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("publicIP(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}

// FuzzRedirectTarget: whatever the Location, a redirect off the
// registry's origin is https to a name or a public address.
func FuzzRedirectTarget(f *testing.F) {
	for _, s := range []string{"https://storage.example.net/b", "/x", "http://127.0.0.1:1/", "https://[::1]/", "https://169.254.169.254/", "//evil/x", "https://LOCALHOST./", "https://0x7f000001/", "https://2130706433/", "https://127.1/"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://registry.example")
	f.Fuzz(func(t *testing.T, loc string) {
		next, own, err := redirectTarget(base, base, loc)
		if err != nil {
			return
		}
		if next.User != nil {
			t.Fatalf("%q: user info kept", loc)
		}
		if own {
			if !sameOrigin(next, base) {
				t.Fatalf("%q: %s taken for the registry's own origin", loc, next)
			}
			return
		}
		if next.Scheme != "https" {
			t.Fatalf("%q: followed over %s", loc, next.Scheme)
		}
		if ip, err := netip.ParseAddr(next.Hostname()); err == nil && !publicIP(ip) {
			t.Fatalf("%q: followed to %s", loc, ip)
		}
	})
}

// TestRedirectGuard: a registry's redirects to this host's services are
// refused and never reach them; blobs may still redirect within the
// registry itself; a manifest never redirects.
func TestRedirectGuard(t *testing.T) {
	blob := []byte("the blob's bytes")
	d := cas.FromBytes(blob)
	var local atomic.Int32
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local.Add(1)
		w.Write(blob)
	}))
	defer svc.Close()
	tlsSvc := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local.Add(1)
		w.Write(blob)
	}))
	defer tlsSvc.Close()
	to := ""
	c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/own/blob":
			w.Write(blob)
		case strings.Contains(r.URL.Path, "/manifests/"):
			http.Redirect(w, r, "/own/manifest", http.StatusFound)
		default:
			http.Redirect(w, r, to, http.StatusFound)
		}
	})
	ctx := context.Background()
	for _, target := range []string{svc.URL + "/healthz", tlsSvc.URL + "/healthz", "https://localhost:" + strings.Split(tlsSvc.URL, ":")[2] + "/x", "http://169.254.169.254/metadata"} {
		to = target
		_, _, err := readBlob(c, d, 0)
		assertClass(t, "blob redirect to "+target, err, ErrUpstreamUnavailable)
		_, err = c.HeadBlob(ctx, "r", d)
		assertClass(t, "blob HEAD redirect to "+target, err, ErrUpstreamUnavailable)
	}
	if n := local.Load(); n != 0 {
		t.Errorf("local services were asked %d times", n)
	}
	to = "/own/blob"
	if got, _, err := readBlob(c, d, 0); err != nil || !bytes.Equal(got, blob) {
		t.Errorf("a redirect within the registry: %q, %v", got, err)
	}
	_, _, _, err := c.GetManifest(ctx, "r", "v1", nil)
	assertClass(t, "manifest redirect", err, ErrUpstreamUnavailable)

	// The dial itself is checked: a name that resolves to loopback is
	// refused even though the name looked fine.
	hop := rebuild(tlsSvc.Client(), guardTransport)
	resp, err := hop.Get("https://localhost:" + strings.Split(tlsSvc.URL, ":")[2] + "/x")
	if err == nil {
		resp.Body.Close()
		t.Fatal("the redirect client reached localhost")
	}
	if !errors.Is(err, errNotPublic) {
		t.Errorf("the redirect client's refusal: %v; want %v", err, errNotPublic)
	}
}

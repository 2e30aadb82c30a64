package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Where redirects may lead. A registry may send a blob to its storage (a
// CDN, a signed storage URL); nothing else it answers is followed, so that
// a registry cannot make the cache fetch — and keep — what a service on
// this host or its network answers.
//
//   - Only blob requests follow redirects; a manifest, token or ping
//     answered with a redirect is an error.
//   - A redirect to the registry's own origin (scheme, host and port) is
//     followed as the registry itself: that is how a configured loopback
//     registry on plain http may redirect.
//   - Any other host must be https, and must not be, or resolve to, a
//     loopback, link-local, private, shared or otherwise non-public
//     address. The check is made on the address actually dialled, so a
//     name that resolves differently a second time is caught too.

// errNotPublic is the refusal of a redirect target's address.
var errNotPublic = errors.New("not a public address")

// allowLoopbackHops lets redirects lead to loopback addresses, over plain
// http too: for this package's tests only, whose storage servers are all
// on loopback.
var allowLoopbackHops atomic.Bool

// loopbackHop reports whether the test hook lets host through.
func loopbackHop(host string) bool {
	return allowLoopbackHops.Load() && isLoopback(host)
}

// redirectTarget checks where a redirect from a blob request leads, for a
// registry at base. It returns the target without user info, and whether
// it is the registry's own origin (fetched as the registry, no dial guard).
func redirectTarget(base, cur *url.URL, location string) (next *url.URL, own bool, err error) {
	if location == "" {
		return nil, false, errors.New("a redirect without a Location")
	}
	next, err = cur.Parse(location)
	if err != nil || (next.Scheme != "https" && next.Scheme != "http") || next.Host == "" || next.Hostname() == "" {
		return nil, false, fmt.Errorf("a redirect to an unusable location %q", cleanText(location, 120))
	}
	next.User = nil
	if sameOrigin(next, base) {
		return next, true, nil
	}
	if loopbackHop(next.Hostname()) {
		return next, false, nil
	}
	if next.Scheme != "https" {
		return nil, false, fmt.Errorf("a redirect to plain http on another host %s: only https is followed off the registry's host", safeURL(next))
	}
	host := strings.ToLower(strings.TrimSuffix(next.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return nil, false, fmt.Errorf("a redirect to %s: %w", safeURL(next), errNotPublic)
	}
	if ip, err := netip.ParseAddr(host); err == nil && !publicIP(ip) {
		return nil, false, fmt.Errorf("a redirect to %s: %w", safeURL(next), errNotPublic)
	}
	return next, false, nil
}

// nonPublic are the ranges a redirect may not reach besides those netip
// names (loopback, private, link-local, multicast, unspecified).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),        // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),    // carrier-grade NAT, shared
	netip.MustParsePrefix("168.63.129.16/32"), // Azure's host endpoint (wire server)
	netip.MustParsePrefix("192.0.0.0/24"),     // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),    // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),      // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b::/96"),     // NAT64: may wrap any IPv4
	netip.MustParsePrefix("64:ff9b:1::/48"),   // local-use NAT64
	netip.MustParsePrefix("2001::/32"),        // Teredo: may wrap any IPv4
	netip.MustParsePrefix("2002::/16"),        // 6to4: may wrap any IPv4
	netip.MustParsePrefix("2001:db8::/32"),    // documentation
	netip.MustParsePrefix("fec0::/10"),        // site-local, deprecated
	netip.MustParsePrefix("::ffff:0:0:0/96"),  // IPv4-translated
	netip.MustParsePrefix("100::/64"),         // discard-only
}

// publicIP reports whether ip is a public unicast address a redirect may
// lead to.
func publicIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() ||
		ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// guardTransport returns a copy of rt whose connections go only to public
// addresses. A transport it cannot copy is replaced by one that refuses
// every request: redirects off the registry's host then fail, safely.
func guardTransport(rt http.RoundTripper) http.RoundTripper {
	var t *http.Transport
	switch x := rt.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = x.Clone()
	default:
		return refuseAll{}
	}
	proxies := &sync.Map{} // proxy host:port → true: dialled as they are
	if proxy := t.Proxy; proxy != nil {
		t.Proxy = func(r *http.Request) (*url.URL, error) {
			u, err := proxy(r)
			if err != nil || u == nil {
				return u, err
			}
			// Through a proxy the target is dialled by the proxy: check
			// what the name resolves to here instead.
			if err := resolvesPublic(r.Context(), r.URL.Hostname()); err != nil {
				return nil, err
			}
			proxies.Store(canonicalAddr(u), true)
			return u, nil
		}
	}
	guarded := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, ControlContext: dialControl}
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, ok := proxies.Load(addr); ok {
			return plain.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
	t.DialTLSContext = nil
	return t
}

// dialControl refuses, just before connecting, an address that is not
// public.
func dialControl(_ context.Context, _, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !publicIP(ip) && !loopbackHop(host) {
		return fmt.Errorf("redirect target %s: %w", address, errNotPublic)
	}
	return nil
}

// resolvesPublic checks every address host resolves to.
func resolvesPublic(ctx context.Context, host string) error {
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("redirect target %s: %w", host, err)
	}
	for _, ip := range ips {
		if !publicIP(ip) {
			return fmt.Errorf("redirect target %s resolves to %s: %w", host, ip, errNotPublic)
		}
	}
	return nil
}

// canonicalAddr is a proxy URL's host:port as the transport dials it.
func canonicalAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "https":
			port = "443"
		case "socks5", "socks5h":
			port = "1080"
		default:
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// refuseAll is the transport of a redirect hop when the given one cannot
// be guarded.
type refuseAll struct{}

func (refuseAll) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("redirect to %s: the HTTP client's transport cannot be limited to public addresses", r.URL.Host)
}

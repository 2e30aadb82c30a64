package server

import (
	"net/http"
	"net/netip"
	"time"
)

// SetCertCheckEvery changes how often the certificate files are looked at
// and returns the undo.
func SetCertCheckEvery(d time.Duration) func() {
	old := certCheckEvery
	certCheckEvery = d
	return func() { certCheckEvery = old }
}

// IsHTTPS and SessionExpiry are the pure steps of the web sign-in.
func IsHTTPS(r *http.Request, proxies []netip.Prefix) bool { return isHTTPS(r, proxies) }

func SessionExpiry(now time.Time, ttl time.Duration, credExp time.Time) time.Time {
	return sessionExpiry(now, ttl, credExp)
}

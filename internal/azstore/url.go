package azstore

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
)

// Location is a parsed Azure Blob container URL.
//
// Two forms are accepted:
//
//   - Azure host form: https://<account>.blob.core.windows.net/<container>[/<prefix>]
//     (any host whose second label is "blob", which also covers sovereign
//     clouds, private endpoints and Azure Stack);
//   - emulator path form: http://127.0.0.1:10000/<account>/<container>[/<prefix>],
//     as Azurite serves it, where the first path segment names the account.
type Location struct {
	// ServiceURL is the account endpoint without a trailing slash, e.g.
	// https://acct.blob.core.windows.net or http://127.0.0.1:10000/devstoreaccount1.
	ServiceURL string
	// Account is the storage account name.
	Account string
	// Container is the container name.
	Container string
	// Prefix is prepended to every blob name; "" or a path ending in "/".
	Prefix string
	// PathStyle reports the emulator path form.
	PathStyle bool
}

// ContainerURL returns the container's URL, without prefix or query.
func (l Location) ContainerURL() string { return l.ServiceURL + "/" + l.Container }

// String returns the URL the Location was parsed from, in canonical form.
func (l Location) String() string {
	if l.Prefix == "" {
		return l.ContainerURL()
	}
	return l.ContainerURL() + "/" + strings.TrimSuffix(l.Prefix, "/")
}

// BlobName returns the full blob name of name inside the container: the
// Location's prefix joined with name.
func (l Location) BlobName(name string) string { return l.Prefix + strings.TrimPrefix(name, "/") }

// IsAzureHost reports whether host (with or without port) is an Azure Blob
// Storage endpoint in host form, <account>.blob.<cloud suffix>.
func IsAzureHost(host string) bool {
	h := hostOnly(host)
	if net.ParseIP(h) != nil {
		return false
	}
	labels := strings.Split(strings.ToLower(h), ".")
	if len(labels) < 3 || labels[0] == "" {
		return false
	}
	for i, l := range labels[1:] {
		if l == "blob" && i+2 < len(labels) {
			return true
		}
	}
	return false
}

// IsLoopback reports whether host (with or without port) names this machine:
// localhost or a loopback address.
func IsLoopback(host string) bool {
	h := hostOnly(host)
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

// Redact returns raw without userinfo, query and fragment, for messages: a
// URL written by mistake with a SAS token in it must not reach a log.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Cut at the first '?' or '#', whatever else is wrong with it.
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i]
		}
		if i := strings.Index(raw, "@"); i >= 0 {
			raw = "…" + raw[i+1:]
		}
		return raw
	}
	u.User = nil
	u.RawQuery = ""
	u.ForceQuery = false
	u.Fragment = ""
	u.RawFragment = ""
	return u.String()
}

// ParseURL parses an Azure Blob container URL in the Azure host form or the
// emulator path form (see Location). Plain http is accepted only for loopback
// hosts (an emulator); a query (a SAS token) is refused, since secrets belong
// in sasFile or AZURE_STORAGE_SAS_TOKEN.
func ParseURL(raw string) (Location, error) {
	shown := Redact(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("container URL %q: %w", shown, unwrapURLError(err))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopback(u.Host) {
			return Location{}, fmt.Errorf("container URL %q: plain http is allowed only to a loopback emulator; use https", shown)
		}
	default:
		return Location{}, fmt.Errorf("container URL %q: scheme must be https (or http to a loopback emulator)", shown)
	}
	if u.User != nil {
		return Location{}, fmt.Errorf("container URL %q: must not carry a user or password", shown)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return Location{}, fmt.Errorf("container URL %q: must not carry a query; put a SAS token in sasFile or %s", shown, EnvSASToken)
	}
	if u.Fragment != "" {
		return Location{}, fmt.Errorf("container URL %q: must not carry a fragment", shown)
	}
	if u.Host == "" || hostOnly(u.Host) == "" {
		return Location{}, fmt.Errorf("container URL %q: missing host", shown)
	}
	if u.Opaque != "" {
		return Location{}, fmt.Errorf("container URL %q: not a hierarchical URL", shown)
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) == 1 && segs[0] == "" {
		segs = nil
	}
	var loc Location
	host := strings.ToLower(u.Host)
	if IsAzureHost(host) {
		loc.Account = strings.TrimSuffix(strings.Split(hostOnly(host), ".")[0], "-secondary")
		loc.ServiceURL = u.Scheme + "://" + host
	} else {
		if len(segs) == 0 {
			return Location{}, fmt.Errorf("container URL %q: an emulator URL needs the account and the container in its path, e.g. http://127.0.0.1:10000/devstoreaccount1/releases", shown)
		}
		loc.PathStyle = true
		loc.Account = segs[0]
		segs = segs[1:]
		loc.ServiceURL = u.Scheme + "://" + host + "/" + loc.Account
	}
	if err := checkAccount(loc.Account); err != nil {
		return Location{}, fmt.Errorf("container URL %q: %w", shown, err)
	}
	if len(segs) == 0 {
		return Location{}, fmt.Errorf("container URL %q: missing the container name after the account", shown)
	}
	loc.Container = segs[0]
	if err := checkContainer(loc.Container); err != nil {
		return Location{}, fmt.Errorf("container URL %q: %w", shown, err)
	}
	for _, s := range segs[1:] {
		if err := checkPrefixSegment(s); err != nil {
			return Location{}, fmt.Errorf("container URL %q: %w", shown, err)
		}
	}
	if len(segs) > 1 {
		loc.Prefix = strings.Join(segs[1:], "/") + "/"
	}
	return loc, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// checkAccount enforces Azure's account naming: 3 to 24 lowercase letters
// and digits.
func checkAccount(a string) error {
	if len(a) < 3 || len(a) > 24 {
		return fmt.Errorf("account name %q must be 3 to 24 characters", a)
	}
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return fmt.Errorf("account name %q may hold only lowercase letters and digits", a)
		}
	}
	return nil
}

// checkContainer enforces Azure's container naming: 3 to 63 lowercase
// letters, digits and single hyphens, starting and ending with a letter or
// digit; or one of the special containers $root and $web.
func checkContainer(c string) error {
	if c == "$root" || c == "$web" {
		return nil
	}
	if len(c) < 3 || len(c) > 63 {
		return fmt.Errorf("container name %q must be 3 to 63 characters", c)
	}
	for i, r := range c {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '-' && i > 0 && i < len(c)-1 && c[i-1] != '-':
		default:
			return fmt.Errorf("container name %q may hold only lowercase letters, digits and single inner hyphens", c)
		}
	}
	return nil
}

// checkPrefixSegment keeps prefixes to a conservative, URL-safe alphabet so
// that a Location prints and parses back unchanged.
func checkPrefixSegment(s string) error {
	if s == "" || s == "." || s == ".." {
		return fmt.Errorf("blob prefix segment %q is not allowed", s)
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-' || r == '.' || r == '_' || r == '~':
		default:
			return fmt.Errorf("blob prefix segment %q may hold only letters, digits and - . _ ~", s)
		}
	}
	return nil
}

// FolderPath reports whether location names a folder (a path, or a file://
// URL) rather than an http(s) URL, and returns the folder's path.
func FolderPath(location string) (string, bool) {
	if strings.HasPrefix(location, "file://") {
		u, err := url.Parse(location)
		if err != nil {
			return "", false
		}
		p := u.Path
		if len(p) >= 3 && p[0] == '/' && p[2] == ':' { // file:///C:/x
			p = p[1:]
		}
		return filepath.FromSlash(p), true
	}
	if strings.HasPrefix(location, "http://") || strings.HasPrefix(location, "https://") || strings.Contains(location, "://") {
		return "", false
	}
	return location, location != ""
}

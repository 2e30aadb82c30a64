package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/engine/flavors"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/units"
	"github.com/berthhq/berth/telemetry/report"
)

// Validate checks the values of c: enums, URLs, addresses, paths, bounds,
// and which keys go together (auth: token needs tokenFile). It returns
// Errors naming every problem, with lines when c came from Parse or Load,
// or nil. Parse already calls it; call it again after changing a Config.
//
// It does not read the environment or the files the config names: its
// answer is the same on an operator's laptop and on the host.
func (c Config) Validate() error { return c.validate().err() }

func (c Config) validate() Errors {
	v := &validator{src: c.Source}
	v.agent(c.Agent)
	v.control(c.Control)
	v.engine(c.Engine)
	v.atLeast("update", "healthTimeout", c.Update.HealthTimeout, time.Second)
	v.cache(c.Cache)
	v.listen("health", "listen", c.Health.Listen, false)
	return v.errs.sorted()
}

type validator struct {
	src  *Source
	errs Errors
}

// fail records a problem with the key base.field (or base when field is
// ""), at the line of that key, else of base.
func (v *validator) fail(base, field, format string, args ...any) {
	key := base
	if field != "" {
		key = joinKey(base, field)
	}
	p := v.src.at(key, base)
	v.errs = append(v.errs, FieldError{
		File: v.src.name(), Key: key, Line: p.line, Column: p.column,
		Msg: fmt.Sprintf(format, args...),
	})
}

func (v *validator) agent(a Agent) {
	v.absPath("agent", "stateDir", a.StateDir)
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		if k == "" {
			v.fail(joinKey("agent.labels", k), "", "a label key is empty")
		}
	}
}

func (v *validator) control(c report.Config) {
	if c.URL != "" {
		v.webURL("control", "url", c.URL)
	}
	if v.oneOf("control", "auth", c.Auth, report.Auths) {
		if c.Auth == "token" && c.TokenFile == "" {
			v.fail("control", "auth", "token needs tokenFile: the path of the file that holds the token")
		}
		v.onlyWith("control", "tokenFile", c.TokenFile, c.Auth, "token")
		v.onlyWith("control", "clientId", c.ClientID, c.Auth, "managed-identity")
	}
	v.absPath("control", "tokenFile", c.TokenFile)
	v.atLeast("control", "reportInterval", c.ReportInterval, time.Second)
}

func (v *validator) engine(e engine.Config) {
	v.oneOf("engine", "flavor", e.Flavor, flavors.Names)
	if e.Channel == "" {
		v.fail("engine", "channel", "is empty; name a release channel such as stable")
	}
	if u := e.Releases.URL; u != "" && !isAbs(u) {
		if !strings.Contains(u, "://") {
			v.fail("engine.releases", "url", "%s is neither an https URL nor an absolute folder path", quote(u))
		} else {
			v.webURL("engine.releases", "url", u)
		}
	}
	v.credential("engine.releases", e.Releases.Credential)
	v.absPath("engine.releases", "rootFile", e.Releases.RootFile)
	if ep := e.Endpoint; ep != "" {
		scheme, rest, _ := strings.Cut(ep, "://")
		if (scheme != "unix" && scheme != "npipe") || rest == "" {
			v.fail("engine", "endpoint", "%s is not an engine address; write it like unix:///var/run/docker.sock or npipe:////./pipe/docker_engine", quote(ep))
		}
	}
	v.absPath("engine", "dataRoot", e.DataRoot)
	v.atLeast("engine.upgrade", "healthTimeout", e.Upgrade.HealthTimeout, time.Second)
}

func (v *validator) cache(c imagecache.Config) {
	v.listen("cache", "listen", c.Listen, true)
	v.absPath("cache.local", "dir", c.Local.Dir)
	if c.Local.MaxSize <= 0 {
		v.fail("cache.local", "maxSize", "is %s; it must be more than zero", c.Local.MaxSize)
	}
	for i, s := range c.Storage {
		base := indexKey("cache.storage", i)
		if s.URL == "" {
			v.fail(base, "url", "is missing; write the container's URL: https://<account>.blob.core.windows.net/<container>")
		} else if u, ok := v.webURL(base, "url", s.URL); ok && strings.Trim(u.Path, "/") == "" {
			v.fail(base, "url", "%s names no container; write https://<account>.blob.core.windows.net/<container>", quote(s.URL))
		}
		v.credential(base, s.Credential)
	}
	seen := map[string]string{} // normalized name → the key that had it first
	for _, name := range slices.Sorted(maps.Keys(c.Upstreams)) {
		key := joinKey("cache.upstreams", name)
		v.upstream(key, name, c.Upstreams[name])
		if n, ok := imagecache.NormalizeRegistry(name); ok {
			if first, dup := seen[n]; dup {
				v.fail(key, "", "names the same registry as %s (%s: host names ignore case, and Docker Hub's aliases are docker.io); keep one of them", first, n)
			}
			seen[n] = key
		}
	}
	for i, name := range c.Allow {
		v.registryName(indexKey("cache.allow", i), name)
	}
	for i, ref := range c.Prewarm {
		if strings.TrimSpace(ref) == "" {
			v.fail(indexKey("cache.prewarm", i), "", "is empty; write an image reference such as mcr.microsoft.com/windows/nanoserver:ltsc2022")
		}
	}
}

func (v *validator) upstream(base, name string, u upstream.Config) {
	v.registryName(base, name)
	if u.Endpoint != "" {
		v.webURL(base, "endpoint", u.Endpoint)
	}
	if v.oneOf(base, "auth", u.Auth, upstream.Auths) {
		if u.Auth == "basic" && (u.UsernameFile == "" || u.PasswordFile == "") {
			v.fail(base, "auth", "basic needs usernameFile and passwordFile: the paths of the files that hold them")
		}
		v.onlyWith(base, "usernameFile", u.UsernameFile, u.Auth, "basic")
		v.onlyWith(base, "passwordFile", u.PasswordFile, u.Auth, "basic")
		v.onlyWith(base, "clientId", u.ClientID, u.Auth, "managed-identity")
	}
	v.absPath(base, "usernameFile", u.UsernameFile)
	v.absPath(base, "passwordFile", u.PasswordFile)
}

func (v *validator) registryName(key, name string) {
	if name == "" || strings.ContainsAny(name, "/ ") {
		v.fail(key, "", "%s is not a registry name; write it as images use it, such as docker.io or myregistry.azurecr.io", quote(name))
	}
}

func (v *validator) credential(base string, c azstore.Credential) {
	if !v.oneOf(base, "auth", c.Auth, azstore.Auths) {
		return
	}
	// Without keyFile or sasFile the secret comes from the environment at
	// run time (see Credential), so neither is required here.
	v.onlyWith(base, "keyFile", c.KeyFile, c.Auth, "shared-key")
	v.onlyWith(base, "sasFile", c.SASFile, c.Auth, "sas")
	v.onlyWith(base, "clientId", c.ClientID, c.Auth, "managed-identity")
	v.absPath(base, "keyFile", c.KeyFile)
	v.absPath(base, "sasFile", c.SASFile)
}

// oneOf checks an enum and reports whether the value is allowed.
func (v *validator) oneOf(base, field, val string, allowed []string) bool {
	if slices.Contains(allowed, val) {
		return true
	}
	if val == "" {
		v.fail(base, field, "is empty; use one of %s", strings.Join(allowed, ", "))
	} else {
		v.fail(base, field, "%s is not allowed; use one of %s", quote(val), strings.Join(allowed, ", "))
	}
	return false
}

// onlyWith refuses a key set for an auth that does not use it: a keyFile
// under auth: managed-identity is a mistake, not a harmless extra.
func (v *validator) onlyWith(base, field, val, auth, want string) {
	if val != "" && auth != want {
		v.fail(base, field, "is set but auth is %s; it is used only with auth: %s", auth, want)
	}
}

func (v *validator) absPath(base, field, p string) {
	if p != "" && !isAbs(p) {
		v.fail(base, field, "%s is not an absolute path; write the full path", quote(p))
	}
}

func (v *validator) atLeast(base, field string, d units.Duration, least time.Duration) {
	if d.D() < least {
		v.fail(base, field, "is %s; it must be at least %s", d, units.Duration(least))
	}
}

// webURL checks an https URL. Plain http is allowed only to a loopback
// host; credentials and query strings (a SAS token) are never allowed.
func (v *validator) webURL(base, field, s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.fail(base, field, "%s is not an https URL; write it like https://host/path", quote(s))
		return nil, false
	}
	ok := true
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		v.fail(base, field, "%s uses plain http to a host that is not loopback; use https (plain http is allowed only to 127.0.0.1, ::1 or localhost)", quote(u.Redacted()))
		ok = false
	}
	if u.User != nil {
		v.fail(base, field, "must not carry a user name or password; credentials go in files or the environment")
		ok = false
	}
	if u.RawQuery != "" || u.ForceQuery {
		v.fail(base, field, "must not have a query string (?...); a SAS token goes in sasFile or %s, with auth: sas", azstore.EnvSASToken)
		ok = false
	}
	return u, ok
}

// listen checks a host:port address to listen on.
func (v *validator) listen(base, field, s string, loopbackOnly bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.fail(base, field, "%s is not host:port; write it like 127.0.0.1:5050", quote(s))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.fail(base, field, "the port %s is not a number from 1 to 65535", quote(port))
	}
	if loopbackOnly && !isLoopback(host) {
		v.fail(base, field, "%s is not a loopback address; the cache has no TLS or authentication yet, so it listens only on 127.0.0.1, ::1 or localhost", quote(s))
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isAbs reports whether p is an absolute path on Linux or on Windows
// (C:\dir, C:/dir, \\server\share), whichever platform checks it: a config
// for a Windows host can be validated on Linux.
func isAbs(p string) bool {
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\\`) {
		return true
	}
	return len(p) >= 3 && (p[0]|0x20 >= 'a' && p[0]|0x20 <= 'z') && p[1] == ':' && (p[2] == '\\' || p[2] == '/')
}

package imagecache

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/imagecache/cas"
)

// DockerHub is the registry dockerd means when a name has none.
const DockerHub = "docker.io"

// request is what a registry API path asks for.
type request struct {
	Registry string // as images name it: docker.io, myregistry.azurecr.io, 127.0.0.1:5000
	Repo     string // library/busybox
	Kind     string // "manifests" or "blobs"
	// Reference is a tag or a digest for manifests, a digest for blobs.
	Reference string
	Digest    cas.Digest // set when Reference is a digest
}

// Limits of the distribution spec's grammar.
const (
	maxRepoLen = 255
)

var (
	// A path component of a repository name (distribution spec).
	componentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$`)
	tagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
	// A registry host, with an optional port.
	hostRE = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?$`)
)

// apiError is an error with its distribution-spec code and HTTP status.
type apiError struct {
	Status  int
	Code    string // NAME_INVALID, MANIFEST_UNKNOWN, …
	Message string
	Detail  any
	size    int64 // for a 416: the blob's size, sent as Content-Range
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errNameInvalid(format string, args ...any) *apiError {
	return &apiError{Status: 400, Code: "NAME_INVALID", Message: fmt.Sprintf(format, args...)}
}

// parseRequest reads a path under /v2/ (without the prefix) and the query,
// and works out which registry is meant, in SPEC's three ways:
// containerd's mirror form (?ns=<registry>), a registry host as the first
// path component (/v2/<registry>/<repo>/…), else Docker Hub (dockerd's
// registry-mirrors).
func parseRequest(path string, query url.Values) (request, error) {
	var kind string
	i := strings.LastIndex(path, "/manifests/")
	j := strings.LastIndex(path, "/blobs/")
	switch {
	case i >= 0 && i > j:
		kind = "manifests"
	case j >= 0:
		kind, i = "blobs", j
	default:
		return request{}, &apiError{Status: 404, Code: "UNSUPPORTED", Message: "only manifests and blobs are served under /v2/<name>/"}
	}
	name := path[:i]
	ref := path[i+len("/"+kind+"/"):]
	req := request{Kind: kind, Reference: ref}
	if ns := query.Get("ns"); ns != "" {
		if !hostRE.MatchString(ns) {
			return request{}, errNameInvalid("ns=%q is not a registry host", clip.String(ns, 64))
		}
		req.Registry, req.Repo = ns, name
	} else if first, rest, ok := strings.Cut(name, "/"); ok && pathHost(first) != "" {
		req.Registry, req.Repo = pathHost(first), rest
	} else {
		req.Registry, req.Repo = DockerHub, name
	}
	reg, ok := NormalizeRegistry(req.Registry)
	if !ok {
		return request{}, errNameInvalid("registry %q: the port must be 1 to 65535", clip.String(req.Registry, 64))
	}
	req.Registry = reg
	if req.Registry == DockerHub && !strings.Contains(req.Repo, "/") {
		req.Repo = "library/" + req.Repo
	}
	if err := checkRepo(req.Repo); err != nil {
		return request{}, err
	}
	if strings.HasPrefix(ref, "sha256:") || strings.Contains(ref, ":") {
		d, err := cas.ParseDigest(ref)
		if err != nil {
			code := "DIGEST_INVALID"
			if kind == "manifests" {
				code = "MANIFEST_INVALID"
			}
			return request{}, &apiError{Status: 400, Code: code, Message: err.Error()}
		}
		req.Digest = d
	} else if kind == "blobs" {
		return request{}, &apiError{Status: 400, Code: "DIGEST_INVALID", Message: fmt.Sprintf("blob reference %q is not a digest", clip.String(ref, 64))}
	} else if !tagRE.MatchString(ref) {
		return request{}, &apiError{Status: 400, Code: "MANIFEST_INVALID", Message: fmt.Sprintf("tag %q: want up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -", clip.String(ref, 64))}
	}
	return req, nil
}

// looksLikeHost is how Docker tells a registry host from a repository path
// component: it has a dot or a port, or is localhost.
func looksLikeHost(s string) bool {
	return (strings.ContainsAny(s, ".:") || s == "localhost") && hostRE.MatchString(s)
}

// portRE finds the port of a registry written in the path-prefix form.
var portRE = regexp.MustCompile(`^(.+)_([0-9]{1,5})$`)

// pathHost returns the registry a first path component names, or "". A
// registry with a port is written host_port there ("127.0.0.1_5000"),
// because Docker's reference grammar allows no colon in a path; a host
// never contains "_", so the form is unambiguous.
func pathHost(component string) string {
	if looksLikeHost(component) {
		return component
	}
	if m := portRE.FindStringSubmatch(component); m != nil && looksLikeHost(m[1]+":"+m[2]) {
		return m[1] + ":" + m[2]
	}
	return ""
}

// pathComponent writes a registry as the first path component of the
// path-prefix form (the inverse of pathHost).
func pathComponent(registry string) string { return strings.Replace(registry, ":", "_", 1) }

// NormalizeRegistry returns the one name the cache keys a registry by:
// host names are case-insensitive (LocalHost:5000 is localhost:5000), a
// port is written without leading zeros, and Docker Hub's aliases are
// docker.io. Flights, tag records, upstream clients, cache.allow and
// cache.upstreams all go by this name. It reports false for a port outside
// 1–65535.
func NormalizeRegistry(r string) (string, bool) {
	r = strings.ToLower(strings.TrimSpace(r))
	if host, port, ok := strings.Cut(r, ":"); ok {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return r, false
		}
		r = host + ":" + strconv.FormatUint(n, 10)
	}
	return canonicalRegistry(r), true
}

// canonicalRegistry names Docker Hub one way. (An image reference keeps
// its registry as written otherwise: Docker tags images by it.)
func canonicalRegistry(r string) string {
	switch strings.ToLower(r) {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return DockerHub
	}
	return r
}

// normalizeAll normalizes a list of names from the config; a name that
// does not normalize is kept lower-cased (the config's validation reports
// it).
func normalizeAll(names []string) map[string]bool {
	out := make(map[string]bool, len(names))
	for _, n := range names {
		norm, _ := NormalizeRegistry(n)
		out[norm] = true
	}
	return out
}

func checkRepo(repo string) error {
	if repo == "" || len(repo) > maxRepoLen {
		return errNameInvalid("repository name must be 1 to %d characters", maxRepoLen)
	}
	for _, c := range strings.Split(repo, "/") {
		if !componentRE.MatchString(c) {
			return errNameInvalid("repository name %q: component %q must be lowercase letters and digits, separated by . _ __ or -", clip.String(repo, 64), clip.String(c, 64))
		}
	}
	return nil
}

// refName is where a tag's last resolution is kept in the tiers.
func refName(registry, repo, tag string) string {
	return "tags/" + registry + "/" + repo + "/" + tag
}

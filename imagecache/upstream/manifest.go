package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/berthhq/berth/imagecache/cas"
)

// Manifest media types.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIManifest        = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex           = "application/vnd.oci.image.index.v1+json"
)

// DefaultAccept returns the manifest media types asked for when a caller
// names none: images and indexes, Docker's and OCI's.
func DefaultAccept() []string {
	return []string{MediaTypeOCIIndex, MediaTypeOCIManifest, MediaTypeDockerManifestList, MediaTypeDockerManifest}
}

// Descriptor names content the registry holds.
type Descriptor struct {
	// MediaType is the content's type as the registry labels it.
	MediaType string
	// Digest is the content's digest.
	Digest cas.Digest
	// Size is its length in bytes.
	Size int64
}

func acceptHeader(accept []string) http.Header {
	if len(accept) == 0 {
		accept = DefaultAccept()
	}
	return http.Header{"Accept": {strings.Join(accept, ", ")}}
}

// GetManifest fetches a manifest by tag or digest. It returns the body
// byte for byte, its media type and its digest. A body asked for by digest
// must hash to it; a body asked for by tag must hash to the
// Docker-Content-Digest the registry announced, if any (either way a
// mismatch wraps cas.ErrDigestMismatch). Bodies over the size limit give
// ErrTooLarge.
func (c *Client) GetManifest(ctx context.Context, repo, reference string, accept []string) (body []byte, mediaType string, digest cas.Digest, err error) {
	name, err := c.repoName(repo)
	if err != nil {
		return nil, "", "", err
	}
	tag, want, err := parseReference(reference)
	if err != nil {
		return nil, "", "", err
	}
	what := fmt.Sprintf("manifest %s/%s:%s", c.registry, name, reference)
	if tag == "" {
		what = fmt.Sprintf("manifest %s/%s@%s", c.registry, name, reference)
	}
	resp, err := c.do(ctx, request{
		method: http.MethodGet,
		path:   "/v2/" + name + "/manifests/" + reference,
		header: acceptHeader(accept),
		scope:  pullScope(name),
	})
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > c.maxManifest {
		return nil, "", "", fmt.Errorf("%w: %s: %d bytes, the limit is %d", ErrTooLarge, what, resp.ContentLength, c.maxManifest)
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, c.maxManifest+1))
	if err != nil {
		return nil, "", "", transportError(ctx, "read "+what, err)
	}
	if int64(len(body)) > c.maxManifest {
		return nil, "", "", fmt.Errorf("%w: %s: over %d bytes", ErrTooLarge, what, c.maxManifest)
	}
	digest = cas.FromBytes(body)
	if want != "" && digest != want {
		return nil, "", "", fmt.Errorf("%s: %w: content hashes to %s", what, cas.ErrDigestMismatch, digest)
	}
	if announced, ok := announcedDigest(resp.Header); ok && announced != digest {
		return nil, "", "", fmt.Errorf("%s: %w: content hashes to %s, the registry announced %s", what, cas.ErrDigestMismatch, digest, announced)
	}
	if tag != "" && !looksLikeManifest(body) {
		// Asked by tag, nothing else vouches for the body: it must at
		// least be a manifest before a tier keeps it under its digest.
		return nil, "", "", fmt.Errorf("%w: %s: the body is not a manifest (a JSON object with schemaVersion 1 or 2)", ErrUpstreamUnavailable, what)
	}
	return body, manifestMediaType(resp.Header.Get("Content-Type"), body), digest, nil
}

// HeadManifest returns a manifest's descriptor without its body. When the
// registry's HEAD answer lacks the digest or the length (some do), the
// manifest is fetched instead.
func (c *Client) HeadManifest(ctx context.Context, repo, reference string, accept []string) (Descriptor, error) {
	name, err := c.repoName(repo)
	if err != nil {
		return Descriptor{}, err
	}
	_, want, err := parseReference(reference)
	if err != nil {
		return Descriptor{}, err
	}
	what := fmt.Sprintf("manifest %s/%s:%s", c.registry, name, reference)
	resp, err := c.do(ctx, request{
		method: http.MethodHead,
		path:   "/v2/" + name + "/manifests/" + reference,
		header: acceptHeader(accept),
		scope:  pullScope(name),
	})
	if err != nil {
		return Descriptor{}, fmt.Errorf("%s: %w", what, err)
	}
	drain(resp)
	d, hasDigest := announcedDigest(resp.Header)
	if want != "" {
		if hasDigest && d != want {
			return Descriptor{}, fmt.Errorf("%s: %w: the registry announced %s", what, cas.ErrDigestMismatch, d)
		}
		d, hasDigest = want, true
	}
	if resp.ContentLength > c.maxManifest {
		return Descriptor{}, fmt.Errorf("%w: %s: %d bytes, the limit is %d", ErrTooLarge, what, resp.ContentLength, c.maxManifest)
	}
	mt := manifestMediaType(resp.Header.Get("Content-Type"), nil)
	if !hasDigest || resp.ContentLength < 0 || mt == "" {
		body, mt, d, err := c.GetManifest(ctx, repo, reference, accept)
		if err != nil {
			return Descriptor{}, err
		}
		return Descriptor{MediaType: mt, Digest: d, Size: int64(len(body))}, nil
	}
	return Descriptor{MediaType: mt, Digest: d, Size: resp.ContentLength}, nil
}

// looksLikeManifest reports whether body is a JSON object with the
// schemaVersion every image manifest and index carries.
func looksLikeManifest(body []byte) bool {
	var m struct {
		SchemaVersion *int `json:"schemaVersion"`
	}
	return json.Unmarshal(body, &m) == nil && m.SchemaVersion != nil && (*m.SchemaVersion == 1 || *m.SchemaVersion == 2)
}

// announcedDigest reads Docker-Content-Digest; a missing header, or one in
// an algorithm other than sha256, announces nothing we can check.
func announcedDigest(h http.Header) (cas.Digest, bool) {
	v := strings.TrimSpace(h.Get("Docker-Content-Digest"))
	if v == "" {
		return "", false
	}
	d, err := cas.ParseDigest(v)
	if err != nil {
		return "", false
	}
	return d, true
}

// manifestMediaType is the Content-Type without parameters; when that says
// nothing specific, the body's own mediaType field.
func manifestMediaType(contentType string, body []byte) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil {
		switch mt {
		case "", "application/json", "text/plain", "application/octet-stream":
		default:
			return mt
		}
	}
	if len(body) > 0 {
		var doc struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(body, &doc) == nil && doc.MediaType != "" && len(doc.MediaType) < 256 {
			if mt, _, err := mime.ParseMediaType(doc.MediaType); err == nil {
				return mt
			}
		}
	}
	if err == nil {
		return mt
	}
	return ""
}

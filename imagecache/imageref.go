package imagecache

import (
	"fmt"
	"strings"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/imagecache/cas"
)

// ImageRef is an image reference as a user writes it, normalized the way
// Docker does: busybox → docker.io/library/busybox:latest.
type ImageRef struct {
	Registry string
	Repo     string
	Tag      string     // empty when pinned by digest only
	Digest   cas.Digest // empty when named by tag only
}

// ParseImageRef reads "[registry/]repo[:tag][@digest]".
func ParseImageRef(s string) (ImageRef, error) {
	if s == "" || len(s) > 512 {
		return ImageRef{}, fmt.Errorf("image reference %q: want [registry/]name[:tag][@sha256:…]", clip.String(s, 64))
	}
	var ref ImageRef
	rest := s
	if name, d, ok := strings.Cut(rest, "@"); ok {
		dg, err := cas.ParseDigest(d)
		if err != nil {
			return ImageRef{}, fmt.Errorf("image reference %q: %w", clip.String(s, 64), err)
		}
		ref.Digest, rest = dg, name
	}
	// A tag is after the last colon that follows the last slash (a colon
	// before it is a registry port).
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		ref.Tag, rest = rest[i+1:], rest[:i]
		if !tagRE.MatchString(ref.Tag) {
			return ImageRef{}, fmt.Errorf("image reference %q: tag %q is not valid", clip.String(s, 64), clip.String(ref.Tag, 64))
		}
	}
	if first, after, ok := strings.Cut(rest, "/"); ok && looksLikeHost(first) {
		ref.Registry, ref.Repo = canonicalRegistry(first), after
	} else {
		ref.Registry, ref.Repo = DockerHub, rest
	}
	if ref.Registry == DockerHub && !strings.Contains(ref.Repo, "/") {
		ref.Repo = "library/" + ref.Repo
	}
	if err := checkRepo(ref.Repo); err != nil {
		return ImageRef{}, fmt.Errorf("image reference %q: %w", clip.String(s, 64), err)
	}
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = "latest"
	}
	return ref, nil
}

// Reference is the tag or digest to ask a registry for (the digest wins).
func (r ImageRef) Reference() string {
	if r.Digest != "" {
		return string(r.Digest)
	}
	return r.Tag
}

// String writes the reference in full.
func (r ImageRef) String() string {
	s := r.Registry + "/" + r.Repo
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + string(r.Digest)
	}
	return s
}

// FamiliarName is the repository as Docker shows it, without tag or
// digest: docker.io/library/ is left out.
func (r ImageRef) FamiliarName() string {
	if r.Registry == DockerHub {
		return strings.TrimPrefix(r.Repo, "library/")
	}
	return r.Registry + "/" + r.Repo
}

// Familiar is the reference as Docker shows it.
func (r ImageRef) Familiar() string {
	name := r.FamiliarName()
	if r.Tag != "" {
		name += ":" + r.Tag
	}
	if r.Digest != "" {
		name += "@" + string(r.Digest)
	}
	return name
}

// ThroughCache is the name under which dockerd pulls the image from the
// cache at addr, in the path-prefix form: addr/<registry>/<repo>, a
// registry's port written host_port.
func (r ImageRef) ThroughCache(addr string) string {
	s := addr + "/" + pathComponent(r.Registry) + "/" + r.Repo
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + string(r.Digest)
	}
	return s
}

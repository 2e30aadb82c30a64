// Package cas holds what every tier of the image cache shares: content
// digests, the Tier interface a storage tier implements, and the errors
// tiers return. It imports nothing of Berth so that the tiers and the
// registry handler can all depend on it.
package cas

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Digest is a content digest, "sha256:<64 lowercase hex>". Only sha256 is
// accepted: it is what every registry and engine uses.
type Digest string

// ParseDigest checks s and returns it as a Digest.
func ParseDigest(s string) (Digest, error) {
	alg, hexPart, ok := strings.Cut(s, ":")
	if !ok || alg != "sha256" {
		return "", fmt.Errorf("digest %q: want sha256:<64 hex characters>", truncate(s))
	}
	if len(hexPart) != 64 {
		return "", fmt.Errorf("digest %q: want 64 hex characters after sha256:", truncate(s))
	}
	for _, c := range hexPart {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("digest %q: want lowercase hex after sha256:", truncate(s))
		}
	}
	return Digest(s), nil
}

// FromBytes returns the digest of b.
func FromBytes(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// Hex returns the hex part.
func (d Digest) Hex() string { _, h, _ := strings.Cut(string(d), ":"); return h }

// String returns the digest as written.
func (d Digest) String() string { return string(d) }

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Errors tiers return, for errors.Is.
var (
	// ErrNotFound: the tier does not hold the blob or ref.
	ErrNotFound = errors.New("not in this tier")
	// ErrDigestMismatch: content did not hash to its digest (or had another
	// length); nothing was stored.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrUnavailable: the tier cannot be reached or used now; the cache
	// skips it.
	ErrUnavailable = errors.New("tier unavailable")
)

// Tier is one storage tier of the cache: the local disk, or an Azure Blob
// container. Blobs and manifests are stored by digest; refs (a tag's last
// resolution) are small named records.
type Tier interface {
	// Name identifies the tier in logs and metrics ("disk", "blob:<account>/<container>").
	Name() string
	// Stat returns the blob's size, or ErrNotFound.
	Stat(ctx context.Context, d Digest) (int64, error)
	// Open reads the blob from offset to its end and returns that length
	// (the blob's size minus offset); offset == size gives an empty reader,
	// a larger offset an error. The reader's content is not checked
	// again: a tier verifies content when it stores it, and Verify finds
	// rot afterwards.
	Open(ctx context.Context, d Digest, offset int64) (io.ReadCloser, int64, error)
	// Put stores the blob read from r, which must be exactly size bytes
	// hashing to d; otherwise it returns ErrDigestMismatch and stores
	// nothing. A blob already present is not an error.
	Put(ctx context.Context, d Digest, size int64, r io.Reader) error
	// Delete removes the blob; a missing blob is not an error.
	Delete(ctx context.Context, d Digest) error
	// GetRef and PutRef read and write a small named record (at most 64 KiB),
	// such as the digest a tag last resolved to. GetRef returns ErrNotFound.
	GetRef(ctx context.Context, name string) ([]byte, error)
	PutRef(ctx context.Context, name string, value []byte) error
}

// Verifier checks content against a digest while it is read.
type Verifier struct {
	want Digest
	size int64
	h    hash.Hash
	n    int64
}

// NewVerifier returns a Verifier for content of size bytes (-1: unknown)
// that must hash to d.
func NewVerifier(d Digest, size int64) *Verifier {
	return &Verifier{want: d, size: size, h: sha256.New()}
}

// Write feeds content.
func (v *Verifier) Write(p []byte) (int, error) {
	v.n += int64(len(p))
	return v.h.Write(p)
}

// Check reports whether everything written hashes to the digest and has the
// expected length; the error wraps ErrDigestMismatch.
func (v *Verifier) Check() error {
	if v.size >= 0 && v.n != v.size {
		return fmt.Errorf("%w: %s: got %d bytes, want %d", ErrDigestMismatch, v.want, v.n, v.size)
	}
	got := Digest("sha256:" + hex.EncodeToString(v.h.Sum(nil)))
	if got != v.want {
		return fmt.Errorf("%w: content hashes to %s, want %s", ErrDigestMismatch, got, v.want)
	}
	return nil
}

package cas

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxRefSize is the largest value GetRef and PutRef handle, in bytes.
const MaxRefSize = 64 << 10

// maxRefName bounds a ref name, in bytes; Azure allows 1024 for a whole
// blob name and the tiers add a short prefix.
const maxRefName = 512

// ErrRefTooLarge is returned by PutRef for a value over MaxRefSize (and by
// GetRef for a stored value that grew past it).
var ErrRefTooLarge = errors.New("ref value over 64 KiB")

// CheckRefName checks a ref name before a tier turns it into a file or blob
// name: 1 to 512 bytes of UTF-8 without control characters or backslashes,
// segments separated by single '/', none of them "." or "..", not starting
// with '/'. Tiers may escape the name further; this rejects names that could
// mean a path outside the tier's refs.
func CheckRefName(name string) error {
	switch {
	case name == "":
		return errors.New("ref name is empty")
	case len(name) > maxRefName:
		return fmt.Errorf("ref name %q: longer than %d bytes", truncate(name), maxRefName)
	case !utf8.ValidString(name):
		return fmt.Errorf("ref name %q: not UTF-8", truncate(name))
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("ref name %q: control characters and backslashes are not allowed", truncate(name))
		}
	}
	if strings.HasPrefix(name, "/") {
		return fmt.Errorf("ref name %q: must not be absolute", truncate(name))
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch seg {
		case "":
			return fmt.Errorf("ref name %q: empty path segment", truncate(name))
		case ".", "..":
			return fmt.Errorf("ref name %q: %q segments are not allowed", truncate(name), seg)
		}
	}
	return nil
}

package disk

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/berthhq/berth/imagecache/cas"
)

// checkDigest re-validates a digest before it becomes a path: cas.Digest is
// a string type, so a caller could hand over anything.
func checkDigest(d cas.Digest) (string, error) {
	if _, err := cas.ParseDigest(string(d)); err != nil {
		return "", err
	}
	return d.Hex(), nil
}

// blobPath returns where the blob with hex digest h lives.
func (d *Disk) blobPath(h string) string {
	return filepath.Join(d.dir, "blobs", "sha256", h[:2], h)
}

// isHex64 reports whether s is 64 lowercase hex characters.
func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// refFileName turns a ref name (already checked by cas.CheckRefName) into
// one file name that is safe on every file system the agent runs on: every
// byte outside [a-z0-9_-] is written %XX, so '/', '.', ':' and upper-case
// letters (which NTFS would fold) cannot collide or climb out of refs/; a
// Windows device name (con, nul, com1…) gets its first letter escaped; a
// name too long for one path component is replaced by its SHA-256.
func refFileName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	esc := b.String()
	if windowsDevice(esc) {
		esc = fmt.Sprintf("%%%02X", esc[0]) + esc[1:]
	}
	if len(esc) > 200 {
		sum := sha256.Sum256([]byte(name))
		esc = "~" + hex.EncodeToString(sum[:])
	}
	return esc + ".ref"
}

// windowsDevice reports whether s (lowercase letters and digits only, as
// refFileName leaves it) is a name Windows reserves for a device.
func windowsDevice(s string) bool {
	switch s {
	case "con", "prn", "aux", "nul":
		return true
	}
	if len(s) == 4 && (strings.HasPrefix(s, "com") || strings.HasPrefix(s, "lpt")) && '0' <= s[3] && s[3] <= '9' {
		return true
	}
	return false
}

// Package filehash hashes files the way TUF targets name them: the
// lowercase hex SHA-256 of the content and its length. The agent checks
// downloaded engine packages with it (engine/release) and the release
// tooling checks packages before it publishes them (packaging/tufrepo), so
// both agree on what a package's hash is.
package filehash

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
)

// SHA256 returns the lowercase hex SHA-256 of the file at path and its
// size in bytes. Its errors are the os package's, which name the path.
func SHA256(path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

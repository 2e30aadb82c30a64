// Package agentpkg writes the agent packages that self-update installs
// (SPEC "Releases and rollouts"): berth-agent-<version>-<os>-<arch>.tar.gz
// on Linux and .zip on Windows, the binary alone at the root, mode 0755,
// owned by root, every time the build's SOURCE_DATE_EPOCH in UTC. The
// headers are written by hand so that nothing of the build machine (its
// clock, its time zone, its user names) reaches the bytes: two builds of
// one binary give the same package.
package agentpkg

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"fmt"
	"io"
	"time"
)

// FileName is the package's name for version (pkgversion's Name).
func FileName(version, goos, goarch string) string {
	ext := ".tar.gz"
	if goos == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("berth-agent-%s-%s-%s%s", version, goos, goarch, ext)
}

// BinaryName is the agent executable at the package's root, as
// provision/selfupdate looks for it.
func BinaryName(goos string) string {
	if goos == "windows" {
		return "berth-agent.exe"
	}
	return "berth-agent"
}

// dosEpoch is the earliest time a zip's DOS date field holds.
var dosEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Write writes the package of binary for goos to w.
func Write(w io.Writer, goos string, binary []byte, sourceDate time.Time) error {
	if len(binary) == 0 {
		return fmt.Errorf("agent package: the %s binary is empty", goos)
	}
	mtime := sourceDate.UTC().Truncate(time.Second)
	switch goos {
	case "linux":
		return writeTarGz(w, BinaryName(goos), binary, mtime)
	case "windows":
		if mtime.Before(dosEpoch) {
			mtime = dosEpoch
		}
		return writeZip(w, BinaryName(goos), binary, mtime)
	}
	return fmt.Errorf("agent package: os %q: want linux or windows", goos)
}

func writeTarGz(w io.Writer, name string, binary []byte, mtime time.Time) error {
	// A zero gzip header carries no name and no time.
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	h := &tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: int64(len(binary)), Mode: 0o755,
		ModTime: mtime, Uid: 0, Gid: 0, Uname: "root", Gname: "root", Format: tar.FormatPAX,
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("agent package: %w", err)
	}
	if _, err := tw.Write(binary); err != nil {
		return fmt.Errorf("agent package: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("agent package: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("agent package: %w", err)
	}
	return nil
}

func writeZip(w io.Writer, name string, binary []byte, mtime time.Time) error {
	zw := zip.NewWriter(w)
	h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: mtime}
	h.SetMode(0o755)
	f, err := zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("agent package: %w", err)
	}
	if _, err := f.Write(binary); err != nil {
		return fmt.Errorf("agent package: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("agent package: %w", err)
	}
	return nil
}

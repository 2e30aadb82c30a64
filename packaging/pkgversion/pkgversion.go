// Package pkgversion maps the version of a build — `git describe --tags
// --always --dirty` or an explicit VERSION= on the make line — to the
// three forms the packages need: the name (file names, the version
// stamped into the binaries, the release repository), the Debian
// version, and the MSI ProductVersion.
//
//	describe                  Name                         Debian                        MSI
//	v1.2.3 / 1.2.3            1.2.3                        1.2.3                         1.2.3
//	v1.2.3-rc.1               1.2.3-rc.1                   1.2.3~rc.1                    1.2.3
//	v1.2.3-4-gabc1234         1.2.3+4.gabc1234             1.2.3+4.gabc1234              1.2.3.4
//	abc1234 (no tag)          0.0.0+gabc1234               0.0.0+gabc1234                0.0.0
//	any of them + -dirty      …+dirty / ….dirty            …+dirty / ….dirty             unchanged
//
// The name is semver: commits after a tag and a dirty tree are build
// metadata, which every version comparison Berth makes ignores (then
// orders by text), so 1.2.3+4.gabc1234 is never taken for a newer
// release than 1.2.3 nor for an older one, and a pre-release sorts before
// its release. The Debian form sorts a pre-release before its release too
// (the tilde) and a build after a tag after that tag (the plus); it never
// holds a '-', which dpkg would read as a Debian revision. An MSI
// ProductVersion is three numbers within 255.255.65535; the commits after
// a tag go in a fourth field, which Windows Installer ignores when it
// decides on an upgrade: only a tag makes a release that upgrades an
// installed MSI.
package pkgversion

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MaxLen bounds the input and the name; the release repository and the
// control endpoint hold versions of at most 64 bytes.
const MaxLen = 64

// MSI ProductVersion limits (Windows Installer: major.minor.build).
const (
	maxMajor = 255
	maxMinor = 255
	maxBuild = 65535
)

// Versions are one build's version in each form.
type Versions struct {
	// Name is used in file names, stamped into the binaries
	// (buildinfo.Version) and signed into the release repository.
	Name string
	// Debian is the .deb's Version field.
	Debian string
	// MSI is the MSI's ProductVersion: N.N.N, or N.N.N.N with the commits
	// after the tag.
	MSI string
	// Release is true for an exact tag (a pre-release too) on a clean
	// tree.
	Release bool
}

var (
	// describeSuffix is what git describe adds after a tag: the number of
	// commits since it and the abbreviated hash.
	describeSuffix = regexp.MustCompile(`-([0-9]+)-g([0-9a-f]{4,40})$`)
	// bareHash is git describe --always in a history without a tag.
	bareHash = regexp.MustCompile(`^[0-9a-f]{4,40}$`)
	// semver is a tag or an explicit version: X.Y.Z, an optional
	// pre-release and optional build metadata.
	semver = regexp.MustCompile(`^[vV]?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
		`(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$`)
)

// Parse maps a describe output (or an explicit version) to its forms. It
// refuses anything else — an empty string, spaces, path separators, a tag
// that is not vX.Y.Z, numbers over the MSI's limits, more than MaxLen
// bytes — saying what it wants, since the version becomes part of paths.
func Parse(describe string) (Versions, error) {
	if describe == "" {
		return Versions{}, fmt.Errorf("version is empty: tag the commit (git tag v1.2.3) or set VERSION=1.2.3")
	}
	if len(describe) > MaxLen {
		return Versions{}, fmt.Errorf("version %.20q…: %d bytes, over the limit of %d", describe, len(describe), MaxLen)
	}
	rest, dirty := strings.CutSuffix(describe, "-dirty")
	var commits, hash string
	if m := describeSuffix.FindStringSubmatch(rest); m != nil {
		rest, commits, hash = rest[:len(rest)-len(m[0])], m[1], m[2]
	} else if bareHash.MatchString(rest) {
		rest, hash = "0.0.0", rest
	}
	m := semver.FindStringSubmatch(rest)
	if m == nil {
		return Versions{}, fmt.Errorf("version %q: want a tag vX.Y.Z[-pre] as git describe prints it (v1.2.3, v1.2.3-4-gabc1234, abc1234, each maybe -dirty) or VERSION=X.Y.Z", describe)
	}
	nums := [3]int{}
	for i, lim := range [3]int{maxMajor, maxMinor, maxBuild} {
		n, err := strconv.Atoi(m[i+1])
		if err != nil || n > lim {
			return Versions{}, fmt.Errorf("version %q: an MSI ProductVersion holds at most %d.%d.%d", describe, maxMajor, maxMinor, maxBuild)
		}
		nums[i] = n
	}
	pre, build := m[4], m[5]
	build = joinBuild(build, commits, hash, dirty)
	v := Versions{Release: build == ""}
	v.Name = fmt.Sprintf("%d.%d.%d", nums[0], nums[1], nums[2])
	v.MSI = v.Name
	v.Debian = v.Name
	if pre != "" {
		v.Name += "-" + pre
		v.Debian += "~" + strings.ReplaceAll(pre, "-", ".")
	}
	if build != "" {
		v.Name += "+" + build
		v.Debian += "+" + strings.ReplaceAll(build, "-", ".")
	}
	if commits != "" {
		n, err := strconv.Atoi(commits)
		if err != nil || n > maxBuild {
			return Versions{}, fmt.Errorf("version %q: %s commits after the tag; an MSI ProductVersion's fourth field holds at most %d: tag a release", describe, commits, maxBuild)
		}
		v.MSI += "." + strconv.Itoa(n)
	}
	if len(v.Name) > MaxLen || len(v.Debian) > MaxLen {
		return Versions{}, fmt.Errorf("version %q: becomes %q, over the limit of %d bytes", describe, v.Name, MaxLen)
	}
	return v, nil
}

// joinBuild puts the commits after the tag, the hash and the dirty mark
// into semver build metadata, after any the version already had.
func joinBuild(build, commits, hash string, dirty bool) string {
	var parts []string
	if build != "" {
		parts = append(parts, build)
	}
	if commits != "" {
		parts = append(parts, commits)
	}
	if hash != "" {
		parts = append(parts, "g"+hash)
	}
	if dirty {
		parts = append(parts, "dirty")
	}
	return strings.Join(parts, ".")
}

package winhost

import (
	"errors"
	"fmt"
	"strings"

	"github.com/Microsoft/hcsshim/osversion"
)

// ErrNoMatchingImage is returned by PickImage when no entry of a manifest
// list can run on the host.
var ErrNoMatchingImage = errors.New("no image in the manifest list runs on this host")

// Platform is the platform of one entry of an OCI image index or Docker
// manifest list.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	OSVersion    string `json:"os.version,omitempty"`
	Variant      string `json:"variant,omitempty"`
}

// Isolation is how a Windows container must run.
type Isolation string

// The isolation modes of Windows containers.
const (
	// IsolationProcess shares the host kernel: the image's build must
	// match the host's (or, from Windows Server 2022, be an LTSC build
	// between 2022 and the host).
	IsolationProcess Isolation = "process"
	// IsolationHyperV runs the container in a utility VM, which can run
	// images of older builds than the host.
	IsolationHyperV Isolation = "hyperv"
)

// Choice is the entry PickImage chose.
type Choice struct {
	// Index is the entry's position in the list given to PickImage.
	Index    int
	Platform Platform
	// Version is the entry's parsed os.version.
	Version OSVersion
	// ExactBuild is true when the entry's build is the host's.
	ExactBuild bool
	// Isolation is the lightest isolation the entry can run with.
	Isolation Isolation
}

// PickImage chooses, from a manifest list's platforms, the Windows image
// for a host of version host and architecture arch (GOARCH spelling,
// default amd64). It prefers the entry whose build is the host's — the one
// process isolation needs — and among those the host's own revision, else
// the newest revision. With no build match it falls back to the newest
// build below the host's, which runs under Hyper-V isolation (or process
// isolation where Windows Server 2022 compatibility allows). Entries for
// another OS, architecture or major.minor, newer builds than the host's,
// and entries without a parseable os.version are never chosen.
func PickImage(platforms []Platform, host OSVersion, arch string) (Choice, error) {
	if arch == "" {
		arch = "amd64"
	}
	best := -1
	var bestV OSVersion
	for i, p := range platforms {
		if !strings.EqualFold(p.OS, "windows") || !strings.EqualFold(p.Architecture, arch) {
			continue
		}
		v, err := ParseOSVersion(p.OSVersion)
		if err != nil || v.Major != host.Major || v.Minor != host.Minor || v.Build > host.Build {
			continue
		}
		if best < 0 || better(v, bestV, host) {
			best, bestV = i, v
		}
	}
	if best < 0 {
		return Choice{}, fmt.Errorf("%w: host %s/%s, list has %s", ErrNoMatchingImage, host, arch, describe(platforms))
	}
	c := Choice{
		Index:      best,
		Platform:   platforms[best],
		Version:    bestV,
		ExactBuild: bestV.Build == host.Build,
		Isolation:  IsolationHyperV,
	}
	if c.ExactBuild || processCompatible(host.Build, bestV.Build) {
		c.Isolation = IsolationProcess
	}
	return c, nil
}

// better reports whether image version a suits host better than b. Both
// have the host's major.minor and a build no newer than the host's.
func better(a, b, host OSVersion) bool {
	if a.Build != b.Build {
		return a.Build > b.Build
	}
	if (a.Revision == host.Revision) != (b.Revision == host.Revision) {
		return a.Revision == host.Revision
	}
	return a.Revision > b.Revision
}

// processCompatible is hcsshim's rule (osversion.CheckHostAndContainerCompat)
// for builds: before Windows Server 2022 the builds must match; from 2022
// on, a host runs images from the newest LTSC build below its own up to its
// own build (a 2022 host runs 2022 images).
func processCompatible(host, image uint16) bool {
	if host < osversion.LTSC2022 {
		return host == image
	}
	floor := uint16(osversion.LTSC2022)
	for _, ltsc := range []uint16{osversion.LTSC2022, osversion.LTSC2025} {
		if host > ltsc {
			floor = ltsc
		}
	}
	return floor <= image && image <= host
}

func describe(platforms []Platform) string {
	if len(platforms) == 0 {
		return "no entries"
	}
	parts := make([]string, len(platforms))
	for i, p := range platforms {
		parts[i] = p.OS + "/" + p.Architecture
		if p.OSVersion != "" {
			parts[i] += " " + p.OSVersion
		}
	}
	return strings.Join(parts, ", ")
}

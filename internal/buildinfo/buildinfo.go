// Package buildinfo holds the version stamped into the binaries at build
// time (see the Makefile's LDFLAGS).
package buildinfo

import "runtime"

// Set by -ldflags -X at build time.
var (
	Version = "dev"
	Commit  = "unknown"
	Date    = "unknown"
)

// Info is what `version` prints.
type Info struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Date     string `json:"date"`
	Platform string `json:"platform"`
	Go       string `json:"go"`
}

// Get returns this binary's build information.
func Get() Info {
	return Info{Version: Version, Commit: Commit, Date: Date, Platform: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
}

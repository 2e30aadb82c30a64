//go:build !linux

package chromium

// killChromiumLeftovers is a no-op off Linux: there the browser's helper
// processes end with it (a job object on Windows), and the harness has no
// portable way to list command lines.
func killChromiumLeftovers(profile string) int { return 0 }

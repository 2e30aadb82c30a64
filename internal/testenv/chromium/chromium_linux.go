//go:build linux

package chromium

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// killChromiumLeftovers kills the processes still running with profile as
// their user data directory, and returns how many it found. Chromium's
// helpers (zygote, network and GPU processes) can outlive the browser
// process for a moment, or for good when it was killed; each carries
// --user-data-dir on its command line, and the profile is unique to one
// test, so the command line names them without touching anyone else's
// Chromium. It looks until a few passes in a row find nothing, because a
// helper may fork while the first pass runs.
func killChromiumLeftovers(profile string) int {
	want := []byte("--user-data-dir=" + profile)
	total, quiet := 0, 0
	deadline := time.Now().Add(3 * time.Second)
	for quiet < 3 && time.Now().Before(deadline) {
		n := 0
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return total
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil {
				continue
			}
			for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
				if bytes.Equal(arg, want) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					n++
					break
				}
			}
		}
		total += n
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
		time.Sleep(20 * time.Millisecond)
	}
	return total
}

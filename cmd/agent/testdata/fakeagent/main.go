// Command fakeagent stands in for a broken berth-agent in the self-update
// tests: built with -X main.mode=crash it exits at once with status 3,
// like an agent that panics at start; with mode=hang it runs until it is
// stopped and never answers /healthz, like one that never turns Healthy.
package main

import (
	"fmt"
	"os"
	"time"
)

var mode = "crash"

func main() {
	if mode == "crash" {
		fmt.Fprintln(os.Stderr, "fakeagent: panic: simulated crash at start")
		os.Exit(3)
	}
	fmt.Fprintln(os.Stderr, "fakeagent: running, never healthy")
	for {
		time.Sleep(time.Hour)
	}
}

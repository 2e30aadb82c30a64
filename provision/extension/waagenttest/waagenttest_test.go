//go:build !windows

package waagenttest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEnableIsKilledAtItsTimeout checks the harness kills a command's whole
// process group when its timeout passes, as WALinuxAgent does at 300 s for
// enable (shortened here).
func TestEnableIsKilledAtItsTimeout(t *testing.T) {
	m := []byte(`[{"handlerManifest":{"enableCommand":"bin/slow enable","installCommand":"bin/slow install"}}]`)
	g := New(t, Options{Manifest: m, Timeouts: map[string]time.Duration{"enable": 500 * time.Millisecond}})
	script := filepath.Join(t.TempDir(), "slow")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = install ] && exit 0\nsleep 30 &\necho $! > \"$AZURE_GUEST_AGENT_EXTENSION_PATH/child.pid\"\necho seq=$ConfigSequenceNumber\nwait\n"), 0o755)
	h := g.Unpack("1.0", script)
	r := g.Run(context.Background(), "1.0", "enable", 7, nil)
	if !r.TimedOut || r.Elapsed > 10*time.Second || !strings.Contains(r.Output, "seq=7") {
		t.Fatalf("enable = %+v", r)
	}
	data, err := os.ReadFile(filepath.Join(h.Dir, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); strings.Contains(string(stat), ") Z ") {
			break // killed, waiting to be reaped by init
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command's child %d outlived the kill of its process group", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := g.Run(context.Background(), "1.0", "install", 7, nil); r.TimedOut {
		t.Fatalf("install timed out at enable's limit: %+v", r)
	}
}

func TestParseStatusLikeTheGuestAgent(t *testing.T) {
	for name, c := range map[string]struct {
		in   string
		want string
		ok   bool
	}{
		"valid":                {`[{"status":{"status":"success","formattedMessage":{"lang":"en","message":"m"}}}]`, "success", true},
		"unknown coerced":      {`[{"status":{"status":"done"}}]`, "error", true},
		"null substatus":       {`[{"status":{"status":"success","substatus":null}}]`, "success", true},
		"not an array":         {`{"status":{"status":"success"}}`, "", false},
		"no status":            {`[{"status":{}}]`, "", false},
		"bad substatus":        {`[{"status":{"status":"success","substatus":[{"name":"x","status":"?"}]}}]`, "", false},
		"message without lang": {`[{"status":{"status":"success","formattedMessage":{"message":"m"}}}]`, "", false},
	} {
		s, err := ParseStatus([]byte(c.in))
		if (err == nil) != c.ok || (c.ok && s.Status != c.want) {
			t.Errorf("%s: %+v, %v", name, s, err)
		}
	}
}

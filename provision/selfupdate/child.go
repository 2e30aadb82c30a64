package selfupdate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// ChildEnv marks an agent the launcher started: `berth-agent run` with it
// set is the daemon; without it, the launcher. Its value is the launcher's
// version.
const ChildEnv = "BERTH_AGENT_LAUNCHER"

// IsChild reports whether this process is an agent a launcher started, and
// the launcher's version.
func IsChild() (string, bool) {
	v, ok := os.LookupEnv(ChildEnv)
	return v, ok && v != ""
}

// ChildContext is the context of an agent the launcher started: done when
// parent is, or when the launcher closes the agent's stdin — it does so to
// stop it, and the operating system does so when the launcher dies, so an
// agent never outlives its launcher (on Windows, too, where there are no
// signals to send). The goroutine reading stdin ends with the pipe.
func ChildContext(parent context.Context, stdin io.Reader) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	return ctx, cancel
}

// child is one agent process the launcher runs.
type child struct {
	version string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	tail    *tailBuffer
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, set before done closes
	started time.Time
	stop    sync.Once
}

// startChild starts bin with args and the child marker, its output to
// stdout and stderr (and the last lines of stderr kept for the reason of
// a crash).
func startChild(version, bin string, args []string, launcher string, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), ChildEnv+"="+launcher)
	tail := &tailBuffer{max: 2048}
	cmd.Stdout = stdout
	cmd.Stderr = io.MultiWriter(stderr, tail)
	cmd.SysProcAttr = childAttr()
	// A process the agent started and that kept its stderr (none should)
	// must not keep the launcher waiting once the agent has exited.
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start agent %s (%s): %w", version, bin, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent %s (%s): %w", version, bin, err)
	}
	c := &child{version: version, cmd: cmd, stdin: in, tail: tail, done: make(chan struct{}), started: time.Now()}
	// The waiter is the child's: it ends when the process exits, which
	// stop ensures.
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exitCode is the child's exit code; -1 when a signal ended it.
func (c *child) exitCode() int { return c.cmd.ProcessState.ExitCode() }

// stopChild asks the agent to stop (its stdin closed, and SIGTERM where
// there are signals), waits up to grace, then kills it.
func (c *child) stopChild(grace time.Duration) {
	c.stop.Do(func() {
		_ = c.stdin.Close()
		_ = terminate(c.cmd.Process)
	})
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return
	case <-t.C:
	}
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return
	}
	<-c.done
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

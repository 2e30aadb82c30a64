package extension

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// lockFile serialises the handler's commands on one host: the guest agent
// has been seen to start enable twice (the docker extension kept a lock for
// it), and two enables writing the same files at once could restart the
// agent twice. The lock is an OS file lock, so a command SIGKILLed at its
// timeout releases it.
const lockFile = "berth-extension.lock"

// lockWait bounds how long a command waits for another to finish: well
// within enable's 300 s.
var lockWait = 120 * time.Second

// errLocked is what tryLock returns while another process holds the lock.
var errLocked = errors.New("locked")

// lock takes the handler lock in folder, waiting while another command
// holds it. The returned function releases it.
func lock(ctx context.Context, folder string) (func(), error) {
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return nil, failf(CodeHostWrite, "create %s: %w", folder, err)
	}
	path := filepath.Join(folder, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, failf(CodeHostWrite, "open the handler lock %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	for {
		err := tryLock(f)
		if err == nil {
			return func() { unlock(f); f.Close() }, nil
		}
		if !errors.Is(err, errLocked) {
			f.Close()
			return nil, failf(CodeHostWrite, "take the handler lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, failf(CodeHostWrite, "another extension command still holds %s after %s", path, lockWait)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Locked runs command under the handler lock (in the handler's folder).
func (h *Handler) Locked(ctx context.Context, command string) error {
	unlock, err := lock(ctx, h.Env.Root)
	if err != nil {
		return fmt.Errorf("extension %s: %w", command, err)
	}
	defer unlock()
	return h.Run(ctx, command)
}

// Package chromium starts a headless Chromium for one test, with a fresh
// profile, and hands back a chromedp context of its first tab.
package chromium

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/berthhq/berth/internal/testenv"
)

// chromiumFlags are the command-line switches of every test browser, and
// the only ones the harness adds (chromedp adds --remote-debugging-pipe and
// the first page, about:blank). --no-sandbox because tests run as root in
// containers, where Chromium's sandbox cannot start; the others keep the
// browser from calling home or updating itself in the middle of a test.
var chromiumFlags = []string{
	"headless",
	"no-sandbox",
	"disable-gpu",
	"disable-background-networking",
	"disable-component-update",
	"no-first-run",
}

// chromiumStopTimeout bounds the graceful close of the browser at the end of
// a test; after it the process is killed.
const chromiumStopTimeout = 10 * time.Second

// Start starts a headless Chromium private to the test, with a
// fresh profile under t.TempDir(), and returns a chromedp context of its
// first tab: pass it to chromedp.Run, or derive more tabs from it with
// chromedp.NewContext. When the test ends the browser is closed and every
// process that used the profile is gone.
//
// Chromium is Debian's `chromium` on PATH (scripts/install-test-deps.sh);
// when it is missing the test is skipped, or failed under CI=true. With
// -short (unit tests only) the test is skipped.
func Start(t testing.TB) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("Chromium is a real component: skipped with -short")
	}
	bin := testenv.NeedBinary(t, "chromium")
	profile := filepath.Join(t.TempDir(), "chromium-profile")
	if err := os.MkdirAll(profile, 0o700); err != nil {
		t.Fatalf("chromium profile: %v", err)
	}

	out := &testenv.Buffer{}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(out),
	}
	for _, f := range chromiumFlags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	// The browser must not live on with a test's context; it has its own,
	// ended by the cleanup below.
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	logf := &testLogf{t: t}
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(logf.logf))

	stop := func() {
		done := make(chan struct{})
		go func() {
			// A graceful close lets Chromium flush and reap its children.
			_ = chromedp.Cancel(ctx)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(chromiumStopTimeout):
			t.Logf("chromium did not close within %v: killing it", chromiumStopTimeout)
		}
		cancelTab()
		cancelAlloc() // waits for the browser process to exit
		logf.stop()
		if n := killChromiumLeftovers(profile); n > 0 {
			t.Logf("chromium: killed %d leftover processes of profile %s", n, profile)
		}
	}

	// Start the browser now, so that a Chromium that cannot start fails
	// here with its own output, not in the middle of the test. No timeout:
	// the first Run's context is the browser's lifetime.
	if err := chromedp.Do(ctx); err != nil {
		stop()
		t.Fatalf("start chromium %s: %v\n%s", bin, err, out.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() && out.Len() > 0 {
			t.Logf("chromium output:\n%s", testenv.Tail([]byte(out.String()), 4000))
		}
	})
	return ctx
}

// SaveScreenshot writes a full-page PNG of the tab ctx to name in the
// test's artifact directory (t.ArtifactDir: kept under -outputdir with
// `go test -artifacts`, a temporary folder otherwise), logs where it is,
// and returns the path.
func SaveScreenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// testLogf sends chromedp's errors to the test log until stop: chromedp's
// goroutines may report after the test ended, when t.Logf panics.
type testLogf struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testLogf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("chromedp: "+format, args...)
	}
}

func (l *testLogf) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}

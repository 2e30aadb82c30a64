package upstream

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/httpclient"
)

// testHTTPClient is httpclient's client with retries fast enough for tests.
func testHTTPClient(log *slog.Logger) *http.Client {
	return httpclient.NewStandard(httpclient.Options{RetryMax: 1, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond, Logger: log})
}

// logSink collects a client's logs at debug level.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logSink) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestClient makes a client with fast retries and short resume pauses;
// edit may change the options first.
func newTestClient(t *testing.T, registry string, cfg Config, edit ...func(*Options)) (*Client, *logSink) {
	t.Helper()
	logs := &logSink{}
	o := Options{
		Registry:   registry,
		Config:     cfg,
		Logger:     logs.logger(),
		ResumeWait: time.Millisecond,
	}
	o.HTTPClient = testHTTPClient(o.Logger)
	for _, e := range edit {
		e(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, logs
}

// basicConfig writes credential files and returns the upstream config.
func basicConfig(t *testing.T, endpoint, user, pass string) Config {
	t.Helper()
	dir := t.TempDir()
	uf, pf := filepath.Join(dir, "user"), filepath.Join(dir, "pass")
	if err := os.WriteFile(uf, []byte(user+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pf, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Config{Endpoint: endpoint, Auth: "basic", UsernameFile: uf, PasswordFile: pf}
}

// cutProxy is a loopback TCP proxy that forwards to target and, once,
// cuts the first connection whose answer passes cutAfter bytes.
type cutProxy struct {
	Addr     string
	target   string
	cutAfter int64
	cut      atomic.Bool
	conns    atomic.Int32
}

func startCutProxy(t *testing.T, target string, cutAfter int64) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{Addr: l.Addr().String(), target: target, cutAfter: cutAfter}
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c, done)
			}()
		}
	}()
	return p
}

func (p *cutProxy) serve(client net.Conn, done <-chan struct{}) {
	defer client.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		<-done
		client.Close()
		up.Close()
	}()
	go func() { _, _ = io.Copy(up, client) }()
	if p.cut.Load() {
		_, _ = io.Copy(client, up)
		return
	}
	// Forward up to cutAfter bytes, then cut, unless another connection
	// was cut meanwhile.
	n, err := io.CopyN(client, up, p.cutAfter)
	if err != nil || n < p.cutAfter {
		return
	}
	if p.cut.CompareAndSwap(false, true) {
		if tc, ok := client.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, as a dropped link looks
		}
		return
	}
	_, _ = io.Copy(client, up)
}

// Package registry starts Debian's docker-registry (CNCF distribution 2.8)
// for one test, anonymous or behind basic or token auth (with a token
// server of its own), or as a pull-through cache of another registry, and
// reads its access log. Seeding images into it is imagecache/imagetest's.
package registry

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berthhq/berth/internal/testenv"
)

// Credentials are a user name and password for a test registry or token
// server.
type Credentials struct {
	User     string
	Password string
}

// Options configure Start. The zero value is an anonymous
// registry that accepts pushes.
type Options struct {
	// BasicAuth turns on htpasswd auth (a bcrypt file written for the
	// test) with these credentials.
	BasicAuth *Credentials
	// TokenAuth turns on bearer-token auth with tokens from this server
	// (auth.token: realm, service, issuer, rootcertbundle).
	TokenAuth *TokenServer
	// ProxyRemoteURL runs the registry as distribution's pull-through
	// cache of that registry (proxy.remoteurl): the peer the image cache
	// is measured against. Such a registry refuses pushes. Note that
	// distribution 2.8 serves a cold blob from one upstream fetch and
	// stores it from a second one in the background (Server.WaitBlob
	// tells when it is stored).
	ProxyRemoteURL string
	// ProxyAuth are the credentials the pull-through cache uses upstream.
	ProxyAuth *Credentials
}

// Server is a running Debian docker-registry (CNCF distribution 2.8)
// private to one test, on a free loopback port, storing on the filesystem
// under the test's temporary folder.
type Server struct {
	// URL is the registry's base URL, http://127.0.0.1:PORT.
	URL string
	// Addr is its host:port, which is also the registry's name in image
	// references ("127.0.0.1:PORT/repo:tag").
	Addr string
	// Dir is the storage root (filesystem driver).
	Dir string
	// ConfigPath is the generated config.yml.
	ConfigPath string
	// AccessLogPath holds one combined-log line per request; LogPath holds
	// the registry's own log.
	AccessLogPath string
	LogPath       string
	// Auth are the credentials pushes and pulls need (nil: none), from
	// Options.BasicAuth or the token server's.
	Auth *Credentials
}

// Start starts Debian's docker-registry with its own config.yml,
// waits until /v2/ answers and stops it when the test ends. Without the
// binary (apt-get install docker-registry) the test is skipped, or failed
// under CI=true. With -short it is skipped.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("docker-registry is a real component: skipped with -short")
	}
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/docker-registry"); serr == nil {
			bin, err = "/usr/bin/docker-registry", nil
		}
	}
	testenv.Need(t, "docker-registry", err)
	if opts.BasicAuth != nil && opts.TokenAuth != nil {
		t.Fatalf("registry.Start: BasicAuth and TokenAuth are exclusive")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		r, err := start(t, bin, opts)
		if err == nil {
			return r
		}
		lastErr = err // most likely the free port was taken meanwhile
	}
	t.Fatalf("start docker-registry: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, opts Options) (*Server, error) {
	dir := t.TempDir()
	addr := testenv.FreePort(t)
	r := &Server{
		URL:           "http://" + addr,
		Addr:          addr,
		Dir:           filepath.Join(dir, "storage"),
		ConfigPath:    filepath.Join(dir, "config.yml"),
		AccessLogPath: filepath.Join(dir, "access.log"),
		LogPath:       filepath.Join(dir, "registry.log"),
	}
	cfg, err := registryConfig(r, dir, opts)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(r.ConfigPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	access, err := os.Create(r.AccessLogPath)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(r.LogPath)
	if err != nil {
		access.Close()
		return nil, err
	}
	cmd := exec.Command(bin, "serve", r.ConfigPath)
	cmd.Dir = dir
	// distribution 2.8 writes the access log to stdout, its own log to
	// stderr.
	cmd.Stdout, cmd.Stderr = access, logf
	if err := cmd.Start(); err != nil {
		access.Close()
		logf.Close()
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
		access.Close()
		logf.Close()
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			stop()
			out, _ := os.ReadFile(r.LogPath)
			return nil, fmt.Errorf("docker-registry exited early (%v): %s", err, testenv.Tail(out, 4<<10))
		default:
		}
		resp, err := client.Get(r.URL + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			out, _ := os.ReadFile(r.LogPath)
			return nil, fmt.Errorf("docker-registry did not answer on %s within 20s (%v): %s", addr, err, testenv.Tail(out, 4<<10))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(stop)
	return r, nil
}

// registryConfig renders config.yml.
func registryConfig(r *Server, dir string, opts Options) (string, error) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
http:
  addr: %s
  secret: %s
health:
  storagedriver:
    enabled: false
`, q(r.Dir), q(r.Addr), q(hex.EncodeToString(secret)))
	switch {
	case opts.BasicAuth != nil:
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.BasicAuth.Password), bcrypt.MinCost)
		if err != nil {
			return "", err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(opts.BasicAuth.User+":"+string(hash)+"\n"), 0o600); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: %s\n    path: %s\n", q("berth-test"), q(htpasswd))
		r.Auth = opts.BasicAuth
	case opts.TokenAuth != nil:
		s := opts.TokenAuth
		fmt.Fprintf(&b, "auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			q(s.Realm), q(s.Service), q(s.Issuer), q(s.RootCertBundle))
		r.Auth = s.Credentials
	}
	if opts.ProxyRemoteURL != "" {
		fmt.Fprintf(&b, "proxy:\n  remoteurl: %s\n", q(opts.ProxyRemoteURL))
		if opts.ProxyAuth != nil {
			fmt.Fprintf(&b, "  username: %s\n  password: %s\n", q(opts.ProxyAuth.User), q(opts.ProxyAuth.Password))
		}
	}
	return b.String(), nil
}

// AuthURL returns URL with the registry's credentials as user info, the
// form imagetest.Seed takes to push to a registry with auth.
func (r *Server) AuthURL() string {
	if r.Auth == nil {
		return r.URL
	}
	u, _ := url.Parse(r.URL)
	u.User = url.UserPassword(r.Auth.User, r.Auth.Password)
	return u.String()
}

// Request is one line of the registry's access log.
type Request struct {
	Method string
	Path   string // with the query, as requested
	Status int
	Bytes  int64 // body bytes sent (-1 when the log says "-")
}

var accessLine = regexp.MustCompile(`^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)`)

// Requests returns every request the registry has logged so far.
func (r *Server) Requests(t testing.TB) []Request {
	t.Helper()
	f, err := os.Open(r.AccessLogPath)
	if err != nil {
		t.Fatalf("registry access log: %v", err)
	}
	defer f.Close()
	var out []Request
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := accessLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		status, _ := strconv.Atoi(m[3])
		n := int64(-1)
		if m[4] != "-" {
			n, _ = strconv.ParseInt(m[4], 10, 64)
		}
		out = append(out, Request{Method: m[1], Path: m[2], Status: status, Bytes: n})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("registry access log: %v", err)
	}
	return out
}

// CountRequests counts logged requests with method (any when "") whose
// path contains pathPart, e.g. CountRequests(t, "GET", "/blobs/"+digest).
func (r *Server) CountRequests(t testing.TB, method, pathPart string) int {
	t.Helper()
	n := 0
	for _, req := range r.Requests(t) {
		if (method == "" || req.Method == method) && strings.Contains(req.Path, pathPart) {
			n++
		}
	}
	return n
}

// BlobPath returns where the filesystem driver keeps blob d
// ("sha256:<hex>").
func (r *Server) BlobPath(d string) string {
	_, h, _ := strings.Cut(d, ":")
	if len(h) < 2 {
		return ""
	}
	return filepath.Join(r.Dir, "docker", "registry", "v2", "blobs", "sha256", h[:2], h, "data")
}

// WaitBlob waits until the registry's storage holds blob d with size
// bytes, linked into repo, and reports whether it did within timeout.
func (r *Server) WaitBlob(t testing.TB, repo, d string, size int64, timeout time.Duration) bool {
	t.Helper()
	_, h, _ := strings.Cut(d, ":")
	link := filepath.Join(r.Dir, "docker", "registry", "v2", "repositories", filepath.FromSlash(repo), "_layers", "sha256", h, "link")
	deadline := time.Now().Add(timeout)
	for {
		fi, err := os.Stat(r.BlobPath(d))
		if err == nil && fi.Size() == size {
			if _, err := os.Stat(link); err == nil {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

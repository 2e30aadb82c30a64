package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/imagecache"
)

// CtrPuller pulls images into containerd by running the engine's own ctr
// (`ctr images pull --hosts-dir <certs.d>`): containerd 1.6 has no
// transfer service to ask for a pull, and containerd's Go client would
// bring the content, image, snapshot and lease services into the agent.
// ctr ships in the same package as the containerd it talks to, so client
// and daemon are always of one version. The pull goes through the cache
// because the hosts.toml files Berth writes name it as the mirror, with
// the registry behind it as the fallback.
type CtrPuller struct {
	// Ctr is the ctr (ctr.exe) to run.
	Ctr string
	// Address is containerd's socket or named pipe (ctr --address).
	Address string
	// Namespace is the containerd namespace the images go into.
	Namespace string
	// HostsDir is the certs.d folder Berth writes; empty lets ctr use
	// none (then the cache is not used).
	HostsDir string
	// CacheAddr names the cache in error messages only; containerd finds
	// it through the hosts files.
	CacheAddr string
	// Progress, when set (a terminal), receives ctr's own progress
	// display and its error output as they come. When nil, each layer's
	// status changes and each image's size are logged instead.
	Progress io.Writer
	Logger   *slog.Logger
}

// Ref is image as containerd names it: fully qualified, as
// Docker normalizes it (busybox → docker.io/library/busybox:latest,
// index.docker.io/x → docker.io/library/x:latest). The registry is written
// in lower case, since host names are case-insensitive but containerd
// looks certs.d/<registry> up as written. Anything that is not an image
// reference is refused, so nothing from a command line or agent.yaml can
// reach ctr as a flag: the result always starts with a registry host.
func Ref(image string) (string, error) {
	ref, err := imagecache.ParseImageRef(image)
	if err != nil {
		return "", err
	}
	ref.Registry = strings.ToLower(ref.Registry)
	return ref.String(), nil
}

// namespaceRE is containerd's grammar of a namespace (its namespaces
// package's identifiers).
var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// CheckNamespace refuses what containerd would not take as a namespace.
func CheckNamespace(ns string) error {
	if len(ns) > 76 || !namespaceRE.MatchString(ns) {
		return fmt.Errorf("containerd namespace %q: want letters and digits separated by . _ or -, such as k8s.io or default", ns)
	}
	return nil
}

// Pull pulls every image, in order, and stops at the first failure. Every
// reference is checked before the first pull, so a typo in a list fails
// before anything is fetched.
func (p *CtrPuller) Pull(ctx context.Context, images ...string) ([]string, error) {
	refs := make([]string, len(images))
	for i, s := range images {
		r, err := Ref(s)
		if err != nil {
			return nil, fmt.Errorf("pull into containerd: %w", err)
		}
		refs[i] = r
	}
	for _, r := range refs {
		if err := p.pullOne(ctx, r); err != nil {
			return nil, err
		}
	}
	return refs, nil
}

// Args is ctr's command line for a pull of ref (already normalized).
func (p *CtrPuller) Args(ref string) []string {
	args := []string{"--address", p.Address, "--namespace", p.Namespace, "images", "pull"}
	if p.HostsDir != "" {
		args = append(args, "--hosts-dir", p.HostsDir)
	}
	// "--" ends ctr's flags: a reference is never read as one.
	return append(args, "--", ref)
}

func (p *CtrPuller) pullOne(ctx context.Context, ref string) error {
	log := p.logger().With("image", ref, "namespace", p.Namespace)
	out := &ctrOutput{log: log}
	errTail := &lineTail{max: 5}
	cmd := exec.CommandContext(ctx, p.Ctr, p.Args(ref)...)
	if p.Progress != nil {
		cmd.Stdout = p.Progress
		cmd.Stderr = io.MultiWriter(p.Progress, errTail)
	} else {
		cmd.Stdout, cmd.Stderr = out, errTail
	}
	// ctr's children (none today) must not keep the pipes open forever.
	cmd.WaitDelay = 5 * time.Second
	log.Info("pulling into containerd", "ctr", p.Ctr)
	start := time.Now()
	err := cmd.Run()
	out.flush()
	errTail.flush()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pull %s into containerd: %w", ref, ctx.Err())
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("pull %s into containerd: run %s: %w; the containerd package ships bin/ctr: reinstall the version (berth-agent engine install VERSION)", ref, p.Ctr, err)
		}
		msg := strings.Join(errTail.lines(), "; ")
		if msg == "" {
			msg = "no error output"
		}
		cache := "the cache"
		if p.CacheAddr != "" {
			cache += " (" + p.CacheAddr + ")"
		}
		// ee reads "exit status 1", or the signal that ended ctr.
		return fmt.Errorf("pull %s into containerd: ctr %w: %s; check that the image name is right, that containerd runs at %s (berth-agent engine status), and that %s or the registry answers",
			ref, ee, msg, p.Address, cache)
	}
	elapsed := time.Since(start).Round(10 * time.Millisecond).Seconds()
	// ctr's own "total" counts only what is still being fetched, so the
	// size is asked of containerd once the image is there.
	if digest, size, err := p.describe(ctx, ref); err != nil {
		log.Info("pulled into containerd", "seconds", elapsed)
		log.Debug("could not read the image's size", "err", err)
	} else {
		log.Info("pulled into containerd", "digest", digest, "size", size, "seconds", elapsed)
	}
	return nil
}

// ctrImageRE reads a line of `ctr images ls`: REF TYPE DIGEST SIZE
// PLATFORMS LABELS, the size written "1.2 MiB".
var ctrImageRE = regexp.MustCompile(`^(\S+)\s+\S+\s+(sha256:[0-9a-f]{64})\s+([0-9.]+ ?[A-Za-z]+)\s`)

// describe returns the digest and size (for this platform) containerd
// records for ref.
func (p *CtrPuller) describe(ctx context.Context, ref string) (digest, size string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The reference is quoted in the filter: it holds / and :, never a quote.
	cmd := exec.CommandContext(ctx, p.Ctr, "--address", p.Address, "--namespace", p.Namespace, "images", "ls", `name=="`+ref+`"`)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("ctr images ls: %w", err)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if m := ctrImageRE.FindStringSubmatch(line); m != nil && m[1] == ref {
			return m[2], m[3], nil
		}
	}
	return "", "", fmt.Errorf("ctr images ls does not list %s", ref)
}

func (p *CtrPuller) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// ansiRE matches the terminal escapes ctr writes to redraw its progress
// table, whether or not its output is a terminal.
var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// ctrStatusRE reads a line of ctr's progress table (containerd's cmd/ctr
// content.Display): "layer-sha256:<hex>: downloading |+++   | 1.2 MiB/2.0 MiB".
var ctrStatusRE = regexp.MustCompile(`^(\S+):\s+(resolving|resolved|waiting|downloading|done|exists|committing)\b(?:.*\|\s*[0-9.]+ ?[A-Za-z]*/\s*([0-9.]+ ?[A-Za-z]+))?`)

// ctrOutput reads ctr's standard output when it is not shown on a
// terminal, and logs each item's status when it changes: ctr redraws its
// whole table every 100 ms, with terminal escapes even when its output is
// not a terminal.
type ctrOutput struct {
	log    *slog.Logger
	mu     sync.Mutex
	buf    []byte
	status map[string]string
}

func (o *ctrOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, b...)
	for {
		i := bytes.IndexAny(o.buf, "\r\n")
		if i < 0 {
			break
		}
		o.line(string(o.buf[:i]))
		o.buf = o.buf[i+1:]
	}
	if len(o.buf) > 64<<10 { // no line is that long: not ctr's table
		o.buf = o.buf[:0]
	}
	return len(b), nil
}

func (o *ctrOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.buf) > 0 {
		o.line(string(o.buf))
		o.buf = nil
	}
}

func (o *ctrOutput) line(s string) {
	s = strings.TrimSpace(ansiRE.ReplaceAllString(s, ""))
	if s == "" {
		return
	}
	m := ctrStatusRE.FindStringSubmatch(s)
	if m == nil {
		o.log.Debug("ctr", "line", s)
		return
	}
	if o.status[m[1]] == m[2] {
		return
	}
	if o.status == nil {
		o.status = map[string]string{}
	}
	o.status[m[1]] = m[2]
	if m[3] != "" {
		o.log.Info("progress", "item", m[1], "status", m[2], "size", m[3])
	} else {
		o.log.Info("progress", "item", m[1], "status", m[2])
	}
}

// lineTail keeps the last max non-empty lines written to it (ctr's error
// output), escapes removed and each line cut at 500 bytes.
type lineTail struct {
	max  int
	mu   sync.Mutex
	buf  []byte
	last []string
}

func (t *lineTail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	for {
		i := bytes.IndexAny(t.buf, "\r\n")
		if i < 0 {
			break
		}
		t.add(string(t.buf[:i]))
		t.buf = t.buf[i+1:]
	}
	if len(t.buf) > 64<<10 {
		t.add(string(t.buf))
		t.buf = t.buf[:0]
	}
	return len(b), nil
}

func (t *lineTail) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.add(string(t.buf))
	t.buf = nil
}

func (t *lineTail) add(s string) {
	s = strings.TrimSpace(ansiRE.ReplaceAllString(s, ""))
	if s == "" {
		return
	}
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	t.last = append(t.last, s)
	if len(t.last) > t.max {
		t.last = t.last[len(t.last)-t.max:]
	}
}

func (t *lineTail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.last...)
}

// Target names the namespace the images go into.
func (p *CtrPuller) Target() string { return "containerd namespace " + p.Namespace }

var _ engine.Puller = (*CtrPuller)(nil)

// Puller runs the ctr of the package in o.PackageDir (for an engine Berth
// does not manage, the ctr on PATH) against o.Endpoint, with the certs.d
// folder Berth writes, into o.Namespace or the default namespace of
// engine.settings (ImageNamespace).
func (f *Flavor) Puller(o engine.PullOptions) (engine.Puller, error) {
	addr, err := Address(o.Endpoint)
	if err != nil {
		return nil, err
	}
	var ctr string
	if o.PackageDir != "" {
		ctr = CtrPath(o.PackageDir, f.goos())
	} else if ctr, err = exec.LookPath("ctr"); err != nil {
		// An engine the operator installed comes with its own ctr.
		return nil, fmt.Errorf("pull into containerd: no containerd package of Berth's runs and no ctr is on PATH: %w; install containerd's ctr beside the engine", err)
	}
	ns := o.Namespace
	if ns == "" {
		ns = ImageNamespace(o.Settings)
	}
	if err := CheckNamespace(ns); err != nil {
		return nil, fmt.Errorf("%w: %w", err, engine.ErrNotSupported)
	}
	return &CtrPuller{
		Ctr:       ctr,
		Address:   addr,
		Namespace: ns,
		HostsDir:  HostsDir(o.ConfDir),
		CacheAddr: o.CacheAddr,
		Progress:  o.Progress,
		Logger:    o.Logger,
	}, nil
}

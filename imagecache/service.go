package imagecache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/berthhq/berth/telemetry"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/disk"
	"github.com/berthhq/berth/imagecache/upstream"

	"github.com/berthhq/berth/internal/httpclient"
	"github.com/berthhq/berth/internal/statedb"
)

// Service is the image cache as the agent runs it: its tiers, the
// registry handler and the loopback listener. The daemon Starts it; the
// one-shot cache commands only OpenTiers.
type Service struct {
	cfg   Config
	log   *slog.Logger
	Disk  *disk.Disk
	Blobs []*blobtier.Tier
	Cache *Cache

	srv  *http.Server
	ln   net.Listener
	done chan error

	confs map[string]upstream.Config // cache.upstreams by normalized name

	mu        sync.Mutex
	upstreams *clientCache
	mi        *azidentity.ManagedIdentityCredential
}

// maxUnlistedClients bounds the upstream clients kept for registries that
// cache.upstreams does not list: names a client sends are not trusted to
// be few.
const maxUnlistedClients = 64

// NewService builds the cache's tiers and handler from the cache block of
// the config, with the disk tier in dir. It opens no listener and touches
// no network until Start.
func NewService(c Config, dir string, db *statedb.DB, reg prometheus.Registerer, log *slog.Logger) (*Service, error) {
	s := &Service{cfg: c, log: log.With("component", "cache"), upstreams: newClientCache(maxUnlistedClients)}
	s.confs = normalizeConfs(c.Upstreams, s.log)
	d, err := disk.New(disk.Options{Dir: dir, MaxSize: int64(c.Local.MaxSize), DB: db, Logger: log})
	if err != nil {
		return nil, err
	}
	s.Disk = d
	tiers := []cas.Tier{d}
	for i, st := range c.Storage {
		t, err := blobtier.New(blobtier.Options{URL: st.URL, Credential: st.Credential, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("cache.storage[%d]: %w", i, err)
		}
		s.Blobs = append(s.Blobs, t)
		tiers = append(tiers, t)
	}
	s.Cache, err = New(Options{
		Tiers:      tiers,
		Upstream:   s.upstream,
		SpoolDir:   filepath.Join(dir, "spool"),
		Allow:      c.Allow,
		Registries: slices.Collect(maps.Keys(s.confs)),
		Logger:     log,
		Metrics:    NewMetrics(reg),
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// normalizeConfs keys cache.upstreams by normalized registry name; of
// two entries that name one registry, the first in sorted order wins.
func normalizeConfs(in map[string]upstream.Config, log *slog.Logger) map[string]upstream.Config {
	out := make(map[string]upstream.Config, len(in))
	for _, name := range slices.Sorted(maps.Keys(in)) {
		norm, _ := NormalizeRegistry(name)
		if _, dup := out[norm]; dup {
			log.Warn("cache.upstreams names a registry twice; the first entry is used", "registry", norm, "ignored", name)
			continue
		}
		out[norm] = in[name]
	}
	return out
}

// upstream returns the client of a registry (a normalized name), made on
// first use from its entry in cache.upstreams (or the defaults). Clients
// of listed registries are kept; others in a small LRU.
func (s *Service) upstream(registry string) (Upstream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.upstreams.get(registry); ok {
		return c, nil
	}
	conf, listed := s.confs[registry]
	if !listed {
		conf = upstream.DefaultConfig()
	}
	// A client of its own per registry (its connections go to that
	// registry anyway), so that dropping the client frees what its
	// transport keeps per host. Few, short retries: an engine waits on the
	// other end, and a tag's last resolution in a tier beats a minute of
	// backoff against an upstream that is down. Broken blob bodies resume
	// on their own.
	hc := httpclient.NewStandard(httpclient.Options{Logger: s.log, RetryMax: 2, WaitMin: 100 * time.Millisecond, WaitMax: time.Second})
	o := upstream.Options{Registry: registry, Config: conf, HTTPClient: hc, Logger: s.log}
	if conf.Auth == "managed-identity" {
		if s.mi == nil {
			var opts azidentity.ManagedIdentityCredentialOptions
			if conf.ClientID != "" {
				opts.ID = azidentity.ClientID(conf.ClientID)
			}
			mi, err := azidentity.NewManagedIdentityCredential(&opts)
			if err != nil {
				return nil, fmt.Errorf("managed identity for %s: %w", registry, err)
			}
			s.mi = mi
		}
		o.TokenSource = s.mi
	}
	c, err := upstream.New(o)
	if err != nil {
		return nil, err
	}
	s.upstreams.put(registry, c, listed)
	return c, nil
}

// Start opens the tiers and serves the registry API on cache.listen. A blob
// tier that cannot be used is logged and skipped, not fatal: the disk and
// the upstream still serve.
func (s *Service) Start(ctx context.Context) error {
	if err := s.Disk.Start(ctx); err != nil {
		return err
	}
	for _, t := range s.Blobs {
		if err := t.Start(ctx); err != nil {
			s.log.Warn("blob tier unavailable; it is skipped until it answers", "tier", t.Name(), "err", err)
		}
	}
	if err := s.Cache.Start(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("cache.listen %s: %w (is another cache or registry on that port?)", s.cfg.Listen, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Cache, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.done = make(chan error, 1)
	go func() { s.done <- s.srv.Serve(ln) }()
	s.log.Info("image cache listening", "addr", ln.Addr().String(), "dir", s.Disk.Dir(), "blob_tiers", len(s.Blobs))
	return nil
}

// Addr is where the cache listens, once started.
func (s *Service) Addr() string {
	if s.ln == nil {
		return s.cfg.Listen
	}
	return s.ln.Addr().String()
}

// Close stops serving, waits for flights, and flushes the disk index.
func (s *Service) Close() error {
	var errs []error
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		if err := <-s.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.Cache.Close())
	for _, t := range s.Blobs {
		errs = append(errs, t.Close())
	}
	errs = append(errs, s.Disk.Close())
	return errors.Join(errs...)
}

// TierStatus is one tier as `cache stats` shows it.
type TierStatus struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
}

// Stats is what `berth-agent cache stats` prints.
type Stats struct {
	Listen string       `json:"listen"`
	Disk   disk.Stats   `json:"disk"`
	Tiers  []TierStatus `json:"tiers"`
}

// OpenTiers starts the tiers without the listener, for the one-shot cache
// commands.
func (s *Service) OpenTiers(ctx context.Context) error {
	return s.Disk.Start(ctx)
}

// Stats reports the disk tier's figures and each tier's health.
func (s *Service) Stats(ctx context.Context) Stats {
	st := Stats{Listen: s.cfg.Listen, Disk: s.Disk.Stats(), Tiers: []TierStatus{{Name: s.Disk.Name(), Healthy: true}}}
	for _, t := range s.Blobs {
		ts := TierStatus{Name: t.Name(), Healthy: true}
		if err := t.Health(ctx); err != nil {
			ts.Healthy, ts.Error = false, err.Error()
		}
		st.Tiers = append(st.Tiers, ts)
	}
	return st
}

// TierCheckPrefix starts the names of the storage tiers' health checks
// ("cache-tier.<tier>"), which the agent turns into cache.tier.down and
// cache.tier.up events.
const TierCheckPrefix = "cache-tier."

// Checks are the cache's health checks: the loopback listener, and each
// Azure Blob tier. Neither fails the host: engines fall back to the
// upstream, and the other tiers still serve.
func (s *Service) Checks() []telemetry.CheckFunc {
	checks := []telemetry.CheckFunc{s.checkListener}
	for _, t := range s.Blobs {
		checks = append(checks, func(ctx context.Context) telemetry.Check {
			// The name is one the control endpoint accepts (no
			// spaces, colons or slashes); the message names the tier.
			c := telemetry.Check{Name: TierCheckPrefix + telemetry.Name(t.Name()), Status: telemetry.OK, Message: t.Name() + " reachable"}
			if err := t.Health(ctx); err != nil {
				c.Status, c.Message = telemetry.Warn, err.Error()+" (skipped; the disk and the upstream still serve)"
			}
			return c
		})
	}
	return checks
}

func (s *Service) checkListener(ctx context.Context) telemetry.Check {
	c := telemetry.Check{Name: "cache-listener", Status: telemetry.OK, Message: s.Addr() + " answers"}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		// Engines fall back to the upstream: degraded, not down.
		c.Status, c.Message = telemetry.Warn, "image cache does not answer: "+err.Error()
		return c
	}
	conn.Close()
	return c
}

// clientCache holds upstream clients: those of listed registries for
// good, the others least recently used first out past max. Not safe for
// concurrent use (the Service locks around it).
type clientCache struct {
	max    int
	listed map[string]*upstream.Client
	lru    *list.List // of *cachedClient, most recent in front
	byName map[string]*list.Element
}

type cachedClient struct {
	name string
	c    *upstream.Client
}

func newClientCache(max int) *clientCache {
	return &clientCache{max: max, listed: map[string]*upstream.Client{}, lru: list.New(), byName: map[string]*list.Element{}}
}

func (cc *clientCache) get(name string) (*upstream.Client, bool) {
	if c, ok := cc.listed[name]; ok {
		return c, true
	}
	if e, ok := cc.byName[name]; ok {
		cc.lru.MoveToFront(e)
		return e.Value.(*cachedClient).c, true
	}
	return nil, false
}

func (cc *clientCache) put(name string, c *upstream.Client, listed bool) {
	if listed {
		cc.listed[name] = c
		return
	}
	cc.byName[name] = cc.lru.PushFront(&cachedClient{name, c})
	for cc.lru.Len() > cc.max {
		old := cc.lru.Remove(cc.lru.Back()).(*cachedClient)
		delete(cc.byName, old.name)
		old.c.CloseIdleConnections() // requests under way keep theirs
	}
}

// len is how many clients are held.
func (cc *clientCache) len() int { return len(cc.listed) + cc.lru.Len() }

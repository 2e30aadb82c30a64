package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/web"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/httpclient"
	"github.com/berthhq/berth/internal/logging"
)

// serveCommand is berth-control serve: settings from defaults, then
// --config, then flags; then the store, the authenticator, the web page
// and the API wired together until SIGINT or SIGTERM.
func serveCommand() *cli.Command {
	def := server.DefaultConfig()
	var f server.Config
	var configFile string
	return &cli.Command{
		Name:    "serve",
		Summary: "run the control endpoint (reports API, operator API, web page)",
		Daemon:  true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&configFile, "config", "", "settings file, YAML or JSON (flags win over it)")
			fs.StringVar(&f.Listen, "listen", def.Listen, "host:port to listen on; the default is loopback only, :8080 listens on every interface")
			fs.StringVar(&f.DB, "db", "", "the store: sqlite://PATH or postgres://USER@HOST/DB (default "+def.DB+"); created if missing")
			fs.StringVar(&f.Auth, "auth", def.Auth, "accepted tokens: entra,token, entra, token, or none (a laptop demo only)")
			fs.StringVar(&f.Entra.Tenant, "entra-tenant", "", "Entra ID tenant (directory) id")
			fs.StringVar(&f.Entra.Audience, "entra-audience", "", "audience the Entra tokens must carry, e.g. api://berth-control")
			fs.StringVar(&f.Entra.Authority, "entra-authority", "", "Entra ID login endpoint (default "+auth.DefaultAuthority+")")
			fs.StringVar(&f.Entra.OperatorRole, "entra-operator-role", "", "app role that makes an Entra principal an operator (default "+auth.DefaultOperatorRole+")")
			fs.StringVar(&f.Entra.AgentScope, "entra-agent-scope", "", "admit as agents only managed identities in /subscriptions/SUB or /subscriptions/SUB/resourceGroups/RG")
			fs.StringVar(&f.TLS.Cert, "tls-cert", "", "serve https with this certificate (PEM, with its chain; reloaded when it changes)")
			fs.StringVar(&f.TLS.Key, "tls-key", "", "the private key of --tls-cert (PEM)")
			fs.StringVar(&f.TLS.TrustedProxies, "trusted-proxies", "", "TLS-terminating proxies (addresses or CIDR prefixes, comma-separated) whose X-Forwarded-Proto: https is believed")
			fs.StringVar(&f.Log.Format, "log-format", def.Log.Format, "text or json")
			fs.StringVar(&f.Releases.URL, "releases", "", "the signed release metadata the agents trust (`URL` of an Azure Blob container or https base, or a folder); rollouts and pins may then name only versions signed for the hosts' platforms")
			fs.StringVar(&f.Releases.Root, "releases-root", "", "the root.json (`FILE`) that --releases is verified with")
			fs.StringVar(&f.Retention, "retention", "", "what the store keeps of each host's records, as `KEY=VALUE,…`: heartbeats and events by age (30d, 12h; 0 keeps for ever), heartbeatsPerHost and eventsPerHost by count (0: no bound); keys not given keep their defaults, "+store.DefaultRetention.String())
		},
		Run: func(ctx context.Context, in *cli.Invocation) error {
			cfg := def
			if configFile != "" {
				var err error
				if cfg, err = server.LoadConfig(configFile, cfg); err != nil {
					return cli.Usage(err)
				}
			}
			f.Log.Level = in.LogLevel
			in.Flags.Visit(func(fl *flag.Flag) { applyServeFlag(&cfg, f, fl.Name) })
			return serve(ctx, cfg, in.Stderr)
		},
	}
}

// applyServeFlag copies the flag name, set on the command line, from f
// into cfg: flags win over the config file, defaults do not.
func applyServeFlag(cfg *server.Config, f server.Config, name string) {
	switch name {
	case "listen":
		cfg.Listen = f.Listen
	case "db":
		cfg.DB = f.DB
	case "auth":
		cfg.Auth = f.Auth
	case "entra-tenant":
		cfg.Entra.Tenant = f.Entra.Tenant
	case "entra-audience":
		cfg.Entra.Audience = f.Entra.Audience
	case "entra-authority":
		cfg.Entra.Authority = f.Entra.Authority
	case "entra-operator-role":
		cfg.Entra.OperatorRole = f.Entra.OperatorRole
	case "entra-agent-scope":
		cfg.Entra.AgentScope = f.Entra.AgentScope
	case "tls-cert":
		cfg.TLS.Cert = f.TLS.Cert
	case "tls-key":
		cfg.TLS.Key = f.TLS.Key
	case "trusted-proxies":
		cfg.TLS.TrustedProxies = f.TLS.TrustedProxies
	case "log-level":
		cfg.Log.Level = f.Log.Level
	case "log-format":
		cfg.Log.Format = f.Log.Format
	case "retention":
		cfg.Retention = f.Retention
	case "releases":
		cfg.Releases.URL = f.Releases.URL
	case "releases-root":
		cfg.Releases.Root = f.Releases.Root
	}
}

// countsMaxAge is how old the counts of /v1/counts and the web page may
// be: counting a large fleet reads every host, and the page refreshes
// every 10 s.
const countsMaxAge = 5 * time.Second

// serve runs the endpoint cfg describes until ctx ends.
func serve(ctx context.Context, cfg server.Config, stderr io.Writer) error {
	methods, err := cfg.Methods()
	if err != nil {
		return cli.Usage(err)
	}
	log, err := logging.New(stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return cli.Usage(err)
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, w)
		log.Warn(w)
	}
	retention, err := cfg.RetentionPolicy()
	if err != nil {
		return cli.Usage(err)
	}
	log.Info("starting", "listen", cfg.Listen, "db", server.RedactDSN(cfg.DB), "auth", methods, "retention", retention.String(),
		"quota_records_per_minute", cfg.Quota.RecordsPerMinute, "quota_bytes_per_minute", cfg.Quota.BytesPerMinute)
	tlsConfig, err := server.LoadTLS(cfg.TLS.Cert, cfg.TLS.Key, log)
	if err != nil {
		return cli.Usage(err)
	}
	proxies, err := server.ParseTrustedProxies(cfg.TLS.TrustedProxies)
	if err != nil {
		return cli.Usage(err)
	}
	// GOGC or GOMEMLIMIT, when set, win.
	tune := os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == ""
	if tune {
		debug.SetGCPercent(gcPercent)
	}

	st, err := store.Open(ctx, cfg.DB, store.Options{Logger: log, Retention: retention, CountsMaxAge: countsMaxAge})
	if errors.Is(err, store.ErrBadDSN) {
		return cli.Usage(err)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	authn, err := openAuth(ctx, cfg, methods, st, log)
	if err != nil {
		return err
	}
	ro, closeReleases, err := openRollouts(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	defer closeReleases()
	signIn := server.NewWebAuth(server.WebAuthOptions{Auth: authn, Sessions: st, Cookie: web.CookieName, TrustedProxies: proxies})
	page := web.New(web.Options{
		Store: st, Rollouts: ro,
		Authorize: signIn.Authorize,
		Login:     signIn.Login,
		Logout:    signIn.Logout,
		IsHTTPS:   signIn.IsHTTPS,
		Logger:    log,
	})
	so := server.Options{Store: st, Auth: authn, Logger: log, Web: page, TLS: tlsConfig, Rollouts: ro}
	cfg.QuotaOptions(&so)
	srv := server.New(so)
	// The controller and the API stop together: on SIGTERM, or when
	// either fails.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ro.Run(gctx) })
	if tune {
		g.Go(func() error { tuneGC(gctx); return nil })
	}
	g.Go(func() error {
		return srv.ListenAndServe(gctx, cfg.Listen, func(a net.Addr) {
			fmt.Fprintf(stderr, "berth-control serving %s://%s (auth %s, db %s); Ctrl-C stops\n", srv.Scheme(), a, cfg.Auth, server.RedactDSN(cfg.DB))
		})
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Memory of serve. A report is a few KiB of short-lived garbage, so
// while the live heap is small the default GC target spends a fifth of
// the CPU collecting, and a higher one (GOGC 400) buys ingest rate for a
// few MiB. Long polls make serve's live memory large (10,000 of them
// about 125 MiB, most of it goroutine stacks), and GOGC 400 alone would
// then let garbage, and memory never given back, grow far past it. So a
// soft memory limit follows the live memory (the live heap and what is
// not heap) with gcSlack to spare: the collector runs before garbage
// passes it, and the runtime gives freed memory back down to it. Being
// always above what is live, the limit never makes the collector chase
// memory it cannot free.
const (
	gcPercent  = 400
	gcSlack    = 128 << 20
	gcTuneTick = time.Second
)

// gcMetrics are what tuneGC reads.
var gcMetrics = []string{"/gc/heap/live:bytes", "/memory/classes/total:bytes", "/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes", "/memory/classes/heap/free:bytes", "/memory/classes/heap/released:bytes"}

// memoryLimit is the soft limit for the metrics' values, in gcMetrics'
// order: the live heap, plus the memory that is not heap, plus gcSlack.
func memoryLimit(v []uint64) int64 {
	live, total := v[0], v[1]
	heap := v[2] + v[3] + v[4] + v[5]
	return int64(live + (total - min(total, heap)) + gcSlack)
}

// tuneGC moves the soft memory limit with the live memory every
// gcTuneTick until ctx ends, then lifts it.
func tuneGC(ctx context.Context) {
	samples := make([]metrics.Sample, len(gcMetrics))
	for i, name := range gcMetrics {
		samples[i].Name = name
	}
	values := make([]uint64, len(samples))
	t := time.NewTicker(gcTuneTick)
	defer t.Stop()
	defer debug.SetMemoryLimit(math.MaxInt64)
	for {
		metrics.Read(samples)
		for i, s := range samples {
			if s.Value.Kind() != metrics.KindUint64 {
				return // a Go without these metrics: GOGC 400 alone
			}
			values[i] = s.Value.Uint64()
		}
		debug.SetMemoryLimit(memoryLimit(values))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// openAuth is the authenticator of the methods cfg accepts.
func openAuth(ctx context.Context, cfg server.Config, methods []auth.Method, st *store.Store, log *slog.Logger) (*auth.Authenticator, error) {
	opts := auth.Options{Methods: methods, Tokens: st, Logger: log,
		HTTPClient: httpclient.NewStandard(httpclient.Options{Timeout: 30 * time.Second, Logger: log})}
	for _, m := range methods {
		if m == auth.MethodEntra {
			opts.Entra = cfg.EntraOptions()
		}
	}
	return auth.New(ctx, opts)
}

// openRollouts is the rollout controller on st, checking versions against
// the release metadata cfg names (none: not checked). The metadata is
// verified into a directory of its own, removed by the returned func: the
// server fetches it afresh at each start, trusting only the root file.
func openRollouts(ctx context.Context, cfg server.Config, st *store.Store, log *slog.Logger) (*rollout.Service, func(), error) {
	host, _ := os.Hostname()
	o := rollout.Options{Store: st, Logger: log, Holder: fmt.Sprintf("%s:%d", host, os.Getpid())}
	if cfg.Releases.URL == "" {
		return rollout.New(o), func() {}, nil
	}
	dir, err := os.MkdirTemp("", "berth-control-releases-")
	if err != nil {
		return nil, nil, fmt.Errorf("a directory for the release metadata: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	rel, err := rollout.OpenReleases(ctx, cfg.Releases.URL, cfg.Releases.Root, dir, log)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("%w (check --releases %s and --releases-root %s)", err, azstore.Redact(cfg.Releases.URL), cfg.Releases.Root)
	}
	o.Releases = rel
	log.Info("rollouts check versions against the signed release metadata", "releases", azstore.Redact(cfg.Releases.URL), "root", cfg.Releases.Root)
	return rollout.New(o), cleanup, nil
}

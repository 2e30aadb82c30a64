package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/web"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/httpclient"
	"github.com/berthhq/berth/internal/logging"
)

// cmdServe is berth-control serve: settings from defaults, then --config,
// then flags; then the store, the authenticator, the web page and the API
// wired together until SIGINT or SIGTERM.
func cmdServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := server.DefaultConfig()
	var f server.Config
	configFile := fs.String("config", "", "settings file, YAML or JSON (flags win over it)")
	fs.StringVar(&f.Listen, "listen", def.Listen, "host:port to listen on; the default is loopback only, :8080 listens on every interface")
	fs.StringVar(&f.DB, "db", "", "the store: sqlite://PATH or postgres://USER@HOST/DB (default "+def.DB+")")
	fs.StringVar(&f.Auth, "auth", def.Auth, "accepted tokens: entra,token, entra, token, or none (a laptop demo only)")
	fs.StringVar(&f.Entra.Tenant, "entra-tenant", "", "Entra ID tenant (directory) id")
	fs.StringVar(&f.Entra.Audience, "entra-audience", "", "audience the Entra tokens must carry, e.g. api://berth-control")
	fs.StringVar(&f.Entra.Authority, "entra-authority", "", "Entra ID login endpoint (default "+auth.DefaultAuthority+")")
	fs.StringVar(&f.Entra.OperatorRole, "entra-operator-role", "", "app role that makes an Entra principal an operator (default "+auth.DefaultOperatorRole+")")
	fs.StringVar(&f.Log.Level, "log-level", logging.LevelFromEnv(def.Log.Level), "debug, info, warn or error")
	fs.StringVar(&f.Log.Format, "log-format", def.Log.Format, "text or json")
	rest, err := cli.ParseInterspersed(fs, args)
	if err != nil {
		return usageError{err}
	}
	if len(rest) != 0 {
		return usageError{fmt.Errorf("serve takes no arguments, got %q", rest)}
	}
	cfg := def
	if *configFile != "" {
		if cfg, err = server.LoadConfig(*configFile, cfg); err != nil {
			return usageError{err}
		}
	}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
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
		case "log-level":
			cfg.Log.Level = f.Log.Level
		case "log-format":
			cfg.Log.Format = f.Log.Format
		}
	})
	methods, err := cfg.Methods()
	if err != nil {
		return usageError{err}
	}
	log, err := logging.New(stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return usageError{err}
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, w)
		log.Warn(w)
	}
	log.Info("starting", "listen", cfg.Listen, "db", server.RedactDSN(cfg.DB), "auth", methods)
	// A report is a few KiB of short-lived garbage and the live heap is
	// small, so the default GC target spends a fifth of the CPU collecting;
	// a higher one trades a few MiB for ingest rate. GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	st, err := store.Open(ctx, cfg.DB, store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	opts := auth.Options{Methods: methods, Tokens: st, Logger: log,
		HTTPClient: httpclient.NewStandard(httpclient.Options{Timeout: 30 * time.Second, Logger: log})}
	for _, m := range methods {
		if m == auth.MethodEntra {
			opts.Entra = cfg.EntraOptions()
		}
	}
	authn, err := auth.New(ctx, opts)
	if err != nil {
		return err
	}
	page := web.New(web.Options{
		Store:     st,
		Authorize: server.OperatorAuthorizer(authn, web.CookieName),
		Login:     server.OperatorLogin(authn),
		Logger:    log,
	})
	srv := server.New(server.Options{Store: st, Auth: authn, Logger: log, Web: page})
	err = srv.ListenAndServe(ctx, cfg.Listen, func(a net.Addr) {
		fmt.Fprintf(stderr, "berth-control serving http://%s (auth %s, db %s); Ctrl-C stops\n", a, cfg.Auth, server.RedactDSN(cfg.DB))
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

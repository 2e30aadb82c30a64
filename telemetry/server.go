// Package telemetry is what the agent tells about itself: the local health
// endpoint (health.listen) with its Prometheus figures, and in time the
// health checks and the durable reports to control.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves /healthz and /metrics on health.listen.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
	log  *slog.Logger
}

// NewServer returns a server of the monitor's health and reg's figures,
// with the Go runtime's and the process's added.
func NewServer(reg *prometheus.Registry, health *Monitor, log *slog.Logger) *Server {
	// The collectors package would bring database/sql into the agent for
	// its DB collector; the base package's constructors do the same job.
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{})) //nolint:staticcheck
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	return &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, log: log.With("component", "telemetry")}
}

// Start listens on addr and serves until Close.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health.listen %s: %w", addr, err)
	}
	s.ln, s.done = ln, make(chan error, 1)
	go func() { s.done <- s.srv.Serve(ln) }()
	s.log.Info("health endpoint listening", "addr", ln.Addr().String())
	return nil
}

// Close stops serving.
func (s *Server) Close() error {
	if s.ln == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

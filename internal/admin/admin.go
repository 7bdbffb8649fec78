// Package admin is threatbus's HTTP server for operators: Prometheus
// metrics, health and readiness, the status report and, when fault
// injection is enabled, crash requests. It reads the bus through
// actors.Daemon and holds no state of its own.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/threatbus/threatbus/actors"
	"github.com/threatbus/threatbus/internal/config"
)

// Server is a running admin server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// Start listens on cfg.Listen and serves in the background.
func Start(cfg config.Admin, d *actors.Daemon, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", cfg.Listen, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(d),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { ready(w, r, d) })
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := status(r.Context(), d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	if cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("POST /debug/crash/{plugin}", func(w http.ResponseWriter, r *http.Request) {
		err := d.Crash(r.PathValue("plugin"))
		switch {
		case errors.Is(err, actors.ErrChaosDisabled):
			http.Error(w, err.Error(), http.StatusForbidden)
		case errors.Is(err, actors.ErrUnknownTarget):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, "crash requested: %s\n", r.PathValue("plugin"))
		}
	})
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:  ln,
		log: log,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the server, letting requests in flight finish within ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close stops the server and ends open requests at once.
func (s *Server) Close() error { return s.srv.Close() }

func status(ctx context.Context, d *actors.Daemon) (actors.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return d.Status(ctx)
}

// ready answers 200 when every plugin runs and is connected, 503 with the
// reasons otherwise.
func ready(w http.ResponseWriter, r *http.Request, d *actors.Daemon) {
	st, err := status(r.Context(), d)
	if err != nil {
		http.Error(w, "status unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var not []string
	for _, p := range st.Plugins {
		if !p.Ready {
			line := fmt.Sprintf("%s %s: %s", strings.TrimSuffix(p.Kind, "s"), p.Name, p.NotReady)
			if p.LastError != "" {
				line += " (" + p.LastError + ")"
			}
			not = append(not, line)
		}
	}
	if len(not) > 0 {
		http.Error(w, "not ready:\n"+strings.Join(not, "\n"), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

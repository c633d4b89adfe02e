package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/config"
)

// stack is everything courierd runs, built from a Config.
type stack struct {
	log     *slog.Logger
	grpc    *backend.Server
	http    *http.Server
	httpLis net.Listener
}

func newStack(ctx context.Context, cfg *config.Config, log *slog.Logger) (*stack, error) {
	gcfg := cfg.GRPC
	gcfg.Logger = log
	srv, err := backend.New(gcfg, services()...)
	if err != nil {
		return nil, err
	}
	st := &stack{log: log, grpc: srv}
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	if cfg.HTTP.Addr != "-" {
		addr := cfg.HTTP.Addr
		if addr == "" {
			addr = "127.0.0.1:8006"
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("http: listening on %s: %w", addr, err)
		}
		st.httpLis = lis
		st.http = &http.Server{Handler: st.routes(), ReadHeaderTimeout: 10 * time.Second}
	}
	return st, nil
}

func (st *stack) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// run serves until ctx ends, then shuts down: gRPC first (draining
// in-flight RPCs and the workers registered on it), then HTTP.
func (st *stack) run(ctx context.Context, shutdownTimeout time.Duration, ready func(*stack)) error {
	errc := make(chan error, 2)
	go func() { errc <- st.grpc.Serve() }()
	if st.http != nil {
		st.log.Info("courierd: serving HTTP", "addr", st.httpLis.Addr().String())
		go func() { errc <- st.http.Serve(st.httpLis) }()
	}
	if ready != nil {
		ready(st)
	}
	var serveErr error
	select {
	case <-ctx.Done():
		st.log.Info("courierd: shutting down", "timeout", shutdownTimeout)
	case serveErr = <-errc:
		st.log.Error("courierd: a server stopped; shutting down", "err", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := st.grpc.Shutdown(sctx)
	if st.http != nil {
		err = errors.Join(err, st.http.Shutdown(sctx))
	}
	if serveErr != nil && !errors.Is(serveErr, backend.ErrClosed) && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(serveErr, err)
	}
	return err
}

// grpcAddr and httpAddr are the bound addresses.
func (st *stack) grpcAddr() string { return st.grpc.Addr().String() }
func (st *stack) httpAddr() string {
	if st.httpLis == nil {
		return ""
	}
	return st.httpLis.Addr().String()
}

// Package backend is courier's gRPC server framework: it hosts pluggable
// internal services, each with its own authorization policy (deny by
// default), on one gRPC server with server reflection, grpc.health.v1 with a
// status per service, structured logging of every RPC, and a graceful
// Shutdown that drains in-flight RPCs and then whatever else registered with
// OnShutdown (workers, relays).
//
// It is for serving courier's gRPC APIs (courier.v1.JobService, hello.v1.Hello,
// and services like them). It is not for job logic: handlers, ingest and the
// job stores never import it; cmd/courierd wires them together.
package backend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// Service is one hosted gRPC service.
type Service interface {
	// Desc is the service's descriptor (the generated XXX_ServiceDesc).
	Desc() *grpc.ServiceDesc
	// Register registers the implementation on s.
	Register(s grpc.ServiceRegistrar)
	// Policy is the service's default authorization policy; Config.Policies
	// can replace it by service name.
	Policy() Policy
}

// Config configures a Server. The zero value serves on 127.0.0.1:8005 with
// no authenticators, so every call to a service whose policy does not allow
// unauthenticated callers is refused.
type Config struct {
	// Addr is the gRPC listen address. "" means 127.0.0.1:8005.
	Addr string `json:"addr,omitempty"`
	// DevMode allows unauthenticated calls to every service. It is refused
	// unless Addr is a loopback address, and logs a warning.
	DevMode bool `json:"devMode,omitempty"`
	// Reflection says who may use server reflection. "" means "open" in dev
	// mode and "authenticated" otherwise.
	Reflection ReflectionAccess `json:"reflection,omitempty"`
	// TLS, when set, serves TLS (and with ClientCAFile, accepts client
	// certificates for mTLS). Nil serves plaintext.
	TLS *TLSConfig `json:"tls,omitempty"`
	// Auth chooses the authenticators.
	Auth AuthConfig `json:"auth,omitempty"`
	// MaxRecvMsgBytes bounds a request message. 0 means 16 MiB, above
	// Pub/Sub's 10 MB message limit, so that services can answer an
	// oversized job payload with a clear error of their own.
	MaxRecvMsgBytes int `json:"maxRecvMsgBytes,omitempty"`
	// Policies replaces hosted services' default policies, by full service
	// name (e.g. "hello.v1.Hello").
	Policies map[string]Policy `json:"policies,omitempty"`

	// Logger receives the RPC log. Nil means slog.Default().
	Logger *slog.Logger `json:"-"`
	// Authenticators are used in addition to (after) those that Auth builds.
	Authenticators []Authenticator `json:"-"`
	// ServerOptions are added to the gRPC server's options (e.g. an
	// OpenTelemetry stats handler). Nil entries are ignored.
	ServerOptions []grpc.ServerOption `json:"-"`
}

// TLSConfig is the server's TLS material, as files.
type TLSConfig struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// ClientCAFile, when set, enables mTLS: client certificates are verified
	// against these CAs and identify the caller (a certificate is optional,
	// so token callers can share the port).
	ClientCAFile string `json:"clientCAFile,omitempty"`
}

// AuthConfig chooses and configures the built-in authenticators.
type AuthConfig struct {
	// TokensFile is a YAML or JSON token file (see TokenFile). "" disables
	// bearer tokens.
	TokensFile string `json:"tokensFile,omitempty"`
	// MTLSRoles maps a client certificate's identity (see CertIdentity) to
	// its roles. mTLS authentication is on whenever TLS.ClientCAFile is set.
	MTLSRoles map[string][]string `json:"mtlsRoles,omitempty"`
	// ProxyHeaders trusts X-WEBAUTH-USER and X-WEBAUTH-ROLES. Off unless set:
	// enable only behind an authenticating proxy.
	ProxyHeaders bool `json:"proxyHeaders,omitempty"`
	// TrustedProxies limits ProxyHeaders to calls from these CIDRs. Empty
	// means any peer.
	TrustedProxies []string `json:"trustedProxies,omitempty"`
}

// ErrClosed is returned by Serve after Shutdown or Close.
var ErrClosed = errors.New("backend: server closed")

// Server is a gRPC server hosting Services.
type Server struct {
	cfg      Config
	log      *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	services []string
	auth     *authorizer

	mu         sync.Mutex
	lis        net.Listener
	closed     bool
	onShutdown []func(context.Context) error
}

// New validates cfg and builds a Server hosting services. It does not
// listen: call Listen (optional, to learn the address) and Serve.
func New(cfg Config, services ...Service) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8005"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Reflection == "" {
		cfg.Reflection = ReflectionAuthenticated
		if cfg.DevMode {
			cfg.Reflection = ReflectionOpen
		}
	}
	switch cfg.Reflection {
	case ReflectionOpen, ReflectionAuthenticated, ReflectionOff:
	default:
		return nil, fmt.Errorf("backend: reflection %q is not one of open, authenticated, off", cfg.Reflection)
	}
	if cfg.DevMode {
		if err := requireLoopback(cfg.Addr); err != nil {
			return nil, err
		}
	}

	auth := &authorizer{policies: map[string]Policy{}, reflection: cfg.Reflection, devMode: cfg.DevMode, logger: cfg.Logger}
	var opts []grpc.ServerOption
	if cfg.TLS != nil {
		tc, err := LoadTLS(*cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
		if tc.ClientCAs != nil {
			auth.authenticators = append(auth.authenticators, &MTLSAuthenticator{ClientCAs: tc.ClientCAs, Roles: cfg.Auth.MTLSRoles})
		}
	} else if len(cfg.Auth.MTLSRoles) > 0 {
		return nil, errors.New("backend: auth.mtlsRoles is set but tls.clientCAFile is not: mTLS needs TLS with a client CA")
	}
	if cfg.Auth.TokensFile != "" {
		ta, err := LoadTokenFile(cfg.Auth.TokensFile)
		if err != nil {
			return nil, err
		}
		auth.authenticators = append(auth.authenticators, ta)
	}
	if cfg.Auth.ProxyHeaders {
		pa := &ProxyAuthenticator{}
		for _, c := range cfg.Auth.TrustedProxies {
			_, n, err := net.ParseCIDR(c)
			if err != nil {
				return nil, fmt.Errorf("backend: auth.trustedProxies: %q is not a CIDR such as 10.0.0.0/8: %w", c, err)
			}
			pa.TrustedPeers = append(pa.TrustedPeers, n)
		}
		auth.authenticators = append(auth.authenticators, pa)
	} else if len(cfg.Auth.TrustedProxies) > 0 {
		return nil, errors.New("backend: auth.trustedProxies is set but auth.proxyHeaders is off")
	}
	auth.authenticators = append(auth.authenticators, cfg.Authenticators...)

	if cfg.MaxRecvMsgBytes == 0 {
		cfg.MaxRecvMsgBytes = 16 << 20
	}
	opts = append(opts, grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes))
	opts = append(opts, grpc.ChainUnaryInterceptor(auth.unary), grpc.ChainStreamInterceptor(auth.stream))
	for _, o := range cfg.ServerOptions {
		if o != nil {
			opts = append(opts, o)
		}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, grpc: grpc.NewServer(opts...), health: health.NewServer(), auth: auth}

	seen := map[string]bool{}
	for _, svc := range services {
		name := svc.Desc().ServiceName
		if seen[name] {
			return nil, fmt.Errorf("backend: service %s is listed twice", name)
		}
		seen[name] = true
		p := svc.Policy()
		if err := p.check(svc.Desc(), false); err != nil {
			return nil, err
		}
		if override, ok := cfg.Policies[name]; ok {
			if err := override.check(svc.Desc(), true); err != nil {
				return nil, err
			}
			p = override
		}
		auth.policies[name] = p
		svc.Register(s.grpc)
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
		s.services = append(s.services, name)
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Policies)) {
		if !seen[name] {
			return nil, &PolicyError{Service: name, Valid: slices.Sorted(maps.Keys(seen)), Configured: true}
		}
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if cfg.Reflection != ReflectionOff {
		reflection.Register(s.grpc)
	}
	if cfg.DevMode {
		s.log.Warn("backend: dev mode: unauthenticated calls are allowed on every service; the server listens only on loopback", "addr", cfg.Addr)
	}
	return s, nil
}

// GRPCHandler serves the gRPC protocol (HTTP/2 requests of content type
// application/grpc) through net/http, onto this same server: every call
// runs through the same authenticators, policies and logging as a call on
// the gRPC listener. The caller is identified by the request's headers
// (Authorization, X-WEBAUTH-USER), its RemoteAddr (for trusted proxies) and
// its TLS state (for mTLS). Package httpjson transcodes HTTP/JSON onto it.
// After Shutdown or Close it refuses new calls, and Shutdown ends the calls
// it is serving instead of waiting for them (grpc.Server.ServeHTTP cannot
// drain): let the HTTP server drain first.
func (s *Server) GRPCHandler() http.Handler { return s.grpc }

// Health is the server's health service, for setting a service's status
// (e.g. NOT_SERVING while its store is down). "" is the whole server.
func (s *Server) Health() *health.Server { return s.health }

// Services lists the hosted services' names, in the order given to New.
func (s *Server) Services() []string { return append([]string(nil), s.services...) }

// Listen binds the configured address. Serve calls it when it has not been
// called; call it first to learn Addr before serving.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.lis != nil {
		return nil
	}
	lis, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("backend: listening on %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.DevMode {
		if err := requireLoopback(lis.Addr().String()); err != nil {
			lis.Close()
			return err
		}
	}
	s.lis = lis
	return nil
}

// Addr is the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lis == nil {
		return nil
	}
	return s.lis.Addr()
}

// Serve listens (unless Listen was called) and serves until Shutdown or
// Close. It returns a listen error at once, ErrClosed after Shutdown or Close,
// and any other serving error.
func (s *Server) Serve() error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	lis := s.lis
	s.mu.Unlock()
	s.log.Info("backend: serving gRPC", "addr", lis.Addr().String(), "services", s.services)
	err := s.grpc.Serve(lis)
	if err == nil || errors.Is(err, grpc.ErrServerStopped) {
		return ErrClosed
	}
	return fmt.Errorf("backend: serving: %w", err)
}

// OnShutdown registers f to run during Shutdown, after the gRPC server has
// drained, in registration order: workers and relays that must drain too.
func (s *Server) OnShutdown(f func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onShutdown = append(s.onShutdown, f)
}

// Shutdown marks every service NOT_SERVING, stops accepting connections and
// new RPCs, and waits for in-flight RPCs to finish; then runs the OnShutdown
// functions. When ctx ends first, it stops the server hard (cancelling the
// RPCs still running) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	hooks := s.onShutdown
	s.onShutdown = nil
	s.mu.Unlock()

	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		// Stop cancels the RPCs still running; handlers that ignore their
		// context are not waited for.
		s.grpc.Stop()
		err = fmt.Errorf("backend: shutdown deadline passed with RPCs in flight; they were cancelled: %w", ctx.Err())
	}
	for _, f := range hooks {
		err = errors.Join(err, f(ctx))
	}
	return err
}

// Close stops the server at once, cancelling in-flight RPCs. It is
// idempotent and does not run the OnShutdown functions.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.grpc.Stop()
	return nil
}

// requireLoopback refuses non-loopback addresses in dev mode.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("backend: address %q is not host:port: %w", addr, err)
	}
	if IsLoopback(host) {
		return nil
	}
	return fmt.Errorf("backend: dev mode allows unauthenticated calls, so it listens only on loopback, and %q is not a loopback address; use 127.0.0.1, or turn dev mode off and configure authentication", addr)
}

// IsLoopback reports whether host (an IP or "localhost") is a loopback
// address. An empty host (all interfaces) is not.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoadTLS reads c's files into a server TLS configuration, as the gRPC
// server uses it: with ClientCAFile, client certificates are requested (not
// required) and left to MTLSAuthenticator to verify. The HTTP server of the
// same process uses it too, so that its callers present certificates to the
// same authenticator.
func LoadTLS(c TLSConfig) (*tls.Config, error) {
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, errors.New("backend: tls needs both certFile and keyFile")
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("backend: loading tls certFile/keyFile: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("backend: reading tls clientCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend: tls clientCAFile %s holds no PEM certificates", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		// Request, don't verify: MTLSAuthenticator verifies, so that a bad
		// certificate gets a clear Unauthenticated instead of a failed handshake.
		tc.ClientAuth = tls.RequestClientCert
	}
	return tc, nil
}

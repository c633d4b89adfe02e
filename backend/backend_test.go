package backend_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/backend/hello"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/internal/testenv"
	hellov1 "github.com/courierq/courier/proto/hello/v1"
)

// probe is a test service, "courier.test.Probe", with a unary Ping, a
// server-streaming Watch, a unary Admin, and a unary Slow that blocks until
// released. Its descriptor is written by hand: no generated code needed.
type probe struct {
	policy  backend.Policy
	entered chan struct{}
	release chan struct{}
	// extra registers a second service that the server does not list.
	extra bool
}

const probeService = "courier.test.Probe"

func (p *probe) Desc() *grpc.ServiceDesc { return probeDesc(probeService) }
func (p *probe) Policy() backend.Policy  { return p.policy }
func (p *probe) Register(r grpc.ServiceRegistrar) {
	r.RegisterService(probeDesc(probeService), p)
	if p.extra {
		r.RegisterService(probeDesc("courier.test.Unlisted"), p)
	}
}

func probeDesc(name string) *grpc.ServiceDesc {
	unary := func(method string) grpc.MethodDesc {
		return grpc.MethodDesc{MethodName: method, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(*probe).unary(ctx, method, req.(*wrapperspb.StringValue))
			}
			if ic == nil {
				return h(ctx, in)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + name + "/" + method}, h)
		}}
	}
	return &grpc.ServiceDesc{
		ServiceName: name,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{unary("Ping"), unary("Admin"), unary("Slow")},
		Streams: []grpc.StreamDesc{{StreamName: "Watch", ServerStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			for i := range 2 {
				if err := stream.SendMsg(wrapperspb.String(in.Value + strings.Repeat("!", i))); err != nil {
					return err
				}
			}
			return nil
		}}},
	}
}

func (p *probe) unary(ctx context.Context, method string, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if method == "Slow" {
		close(p.entered)
		select {
		case <-p.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	id, _ := backend.IdentityFromContext(ctx)
	return wrapperspb.String(method + ":" + id.Name + ":" + in.Value), nil
}

var probePolicy = backend.Policy{
	Rule:    backend.Rule{Roles: []string{"reader", "writer"}},
	Methods: map[string]backend.Rule{"Admin": {Roles: []string{"admin"}}},
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start serves cfg on a free loopback port and returns the address.
func start(t *testing.T, cfg backend.Config, services ...backend.Service) string {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.Logger = quietLogger()
	srv, err := backend.New(cfg, services...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, backend.ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
	return srv.Addr().String()
}

func dial(t *testing.T, addr string, cfg client.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := client.Dial(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// call runs method on the probe service, unary or (for "Watch") streaming,
// and returns the status code.
func call(ctx context.Context, conn *grpc.ClientConn, service, method string) codes.Code {
	full := "/" + service + "/" + method
	if method == "Watch" {
		stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, full)
		if err != nil {
			return status.Code(err)
		}
		if err := stream.SendMsg(wrapperspb.String("x")); err != nil {
			return status.Code(err)
		}
		if err := stream.CloseSend(); err != nil {
			return status.Code(err)
		}
		n := 0
		for {
			out := new(wrapperspb.StringValue)
			err := stream.RecvMsg(out)
			if errors.Is(err, io.EOF) {
				if n != 2 {
					return codes.DataLoss
				}
				return codes.OK
			}
			if err != nil {
				return status.Code(err)
			}
			n++
		}
	}
	out := new(wrapperspb.StringValue)
	return status.Code(conn.Invoke(ctx, full, wrapperspb.String("x"), out))
}

// TestAuthorizationMatrix runs every authenticator against every outcome,
// over unary and streaming RPCs, with service- and method-level roles.
func TestAuthorizationMatrix(t *testing.T) {
	p := testenv.NewPKI(t)
	tokens := testenv.TokenFile(t, map[string][2]string{
		"reader-token": {"svc-reader", "reader"},
		"admin-token":  {"svc-admin", "admin"},
		"norole-token": {"svc-norole", ""},
	})
	addr := start(t, backend.Config{
		TLS: &backend.TLSConfig{CertFile: p.ServerCert, KeyFile: p.ServerKey, ClientCAFile: p.CAFile},
		Auth: backend.AuthConfig{
			TokensFile:   tokens,
			MTLSRoles:    map[string][]string{"spiffe://courier/reader": {"reader"}, "spiffe://courier/admin": {"admin"}},
			ProxyHeaders: true,
		},
	},
		&probe{policy: probePolicy, extra: true},
		&hello.Service{Auth: hello.Open},
		&zeroPolicy{},
	)

	tlsOnly := client.Config{CAFile: p.CAFile}
	withToken := func(tok string) client.Config { c := tlsOnly; c.Token = tok; return c }
	callers := []struct {
		name   string
		cfg    client.Config
		header metadata.MD
		// want per method: Ping, Watch, Admin
		want [3]codes.Code
	}{
		{"none", tlsOnly, nil, [3]codes.Code{codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated}},
		{"token reader", withToken("reader-token"), nil, [3]codes.Code{codes.OK, codes.OK, codes.PermissionDenied}},
		{"token admin", withToken("admin-token"), nil, [3]codes.Code{codes.PermissionDenied, codes.PermissionDenied, codes.OK}},
		{"token without roles", withToken("norole-token"), nil, [3]codes.Code{codes.PermissionDenied, codes.PermissionDenied, codes.PermissionDenied}},
		{"token unknown", withToken("stolen-token"), nil, [3]codes.Code{codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated}},
		{"token malformed", tlsOnly, metadata.Pairs("authorization", "Basic abc"), [3]codes.Code{codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated}},
		{"mtls reader", p.Client(t, "reader", "spiffe://courier/reader", false, false), nil, [3]codes.Code{codes.OK, codes.OK, codes.PermissionDenied}},
		{"mtls admin", p.Client(t, "admin", "spiffe://courier/admin", false, false), nil, [3]codes.Code{codes.PermissionDenied, codes.PermissionDenied, codes.OK}},
		{"mtls unmapped", p.Client(t, "stranger", "spiffe://courier/stranger", false, false), nil, [3]codes.Code{codes.PermissionDenied, codes.PermissionDenied, codes.PermissionDenied}},
		{"mtls rogue CA", p.Client(t, "rogue", "spiffe://courier/admin", true, false), nil, [3]codes.Code{codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated}},
		{"mtls not for client auth", p.Client(t, "server-only", "spiffe://courier/admin", false, true), nil, [3]codes.Code{codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated}},
		{"proxy reader", tlsOnly, metadata.Pairs("x-webauth-user", "alice", "x-webauth-roles", "viewer, reader"), [3]codes.Code{codes.OK, codes.OK, codes.PermissionDenied}},
		{"proxy admin", tlsOnly, metadata.Pairs("x-webauth-user", "bob", "x-webauth-roles", "admin"), [3]codes.Code{codes.PermissionDenied, codes.PermissionDenied, codes.OK}},
		{"proxy empty user", tlsOnly, metadata.Pairs("x-webauth-user", " "), [3]codes.Code{codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated}},
	}
	for _, c := range callers {
		t.Run(c.name, func(t *testing.T) {
			conn := dial(t, addr, c.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if c.header != nil {
				ctx = metadata.NewOutgoingContext(ctx, c.header)
			}
			for i, m := range []string{"Ping", "Watch", "Admin"} {
				if got := call(ctx, conn, probeService, m); got != c.want[i] {
					t.Errorf("%s: got %v, want %v", m, got, c.want[i])
				}
			}
			// hello is open to anyone whose credentials are not bad.
			wantHello := codes.OK
			if c.want[0] == codes.Unauthenticated && c.name != "none" && c.name != "mtls rogue CA" {
				wantHello = codes.Unauthenticated
			}
			_, err := hellov1.NewHelloClient(conn).SayHello(ctx, &hellov1.SayHelloRequest{Name: "x"})
			if got := status.Code(err); got != wantHello {
				t.Errorf("SayHello: got %v, want %v (%v)", got, wantHello, err)
			}
			// A service with no policy and a service not listed at all deny
			// even an admin.
			if c.want[2] == codes.OK {
				for _, svc := range []string{"courier.test.ZeroPolicy", "courier.test.Unlisted"} {
					for _, m := range []string{"Ping", "Watch"} {
						if got := call(ctx, conn, svc, m); got != codes.PermissionDenied {
							t.Errorf("%s/%s: got %v, want PermissionDenied", svc, m, got)
						}
					}
				}
			}
			// Health is open to everyone.
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: probeService}); err != nil && c.want[0] != codes.Unauthenticated {
				t.Errorf("health: %v", err)
			}
		})
	}
}

// zeroPolicy hosts a service whose policy is the zero Policy.
type zeroPolicy struct{ probe }

func (z *zeroPolicy) Desc() *grpc.ServiceDesc { return probeDesc("courier.test.ZeroPolicy") }
func (z *zeroPolicy) Register(r grpc.ServiceRegistrar) {
	r.RegisterService(probeDesc("courier.test.ZeroPolicy"), &z.probe)
}

func TestErrorMessagesSayWhatToDo(t *testing.T) {
	tokens := testenv.TokenFile(t, map[string][2]string{"t": {"svc-a", "reader"}})
	addr := start(t, backend.Config{Auth: backend.AuthConfig{TokensFile: tokens}}, &probe{policy: probePolicy})
	conn := dial(t, addr, client.Config{Token: "t"})
	err := conn.Invoke(context.Background(), "/"+probeService+"/Admin", wrapperspb.String("x"), new(wrapperspb.StringValue))
	for _, want := range []string{"svc-a", "admin", "reader", "Admin"} {
		if !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("PermissionDenied message %q does not mention %q", status.Convert(err).Message(), want)
		}
	}
	anon := dial(t, addr, client.Config{})
	err = anon.Invoke(context.Background(), "/"+probeService+"/Ping", wrapperspb.String("x"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "bearer token") {
		t.Errorf("anonymous call: %v; want Unauthenticated naming the credentials to send", err)
	}
}

func TestPolicyOverrideFromConfig(t *testing.T) {
	addr := start(t, backend.Config{
		Policies: map[string]backend.Policy{probeService: {Rule: backend.Rule{AllowUnauthenticated: true}}},
	}, &probe{policy: probePolicy})
	conn := dial(t, addr, client.Config{})
	if got := call(context.Background(), conn, probeService, "Watch"); got != codes.OK {
		t.Fatalf("Watch with an open policy override: %v", got)
	}
	_, err := backend.New(backend.Config{Policies: map[string]backend.Policy{"no.such.Service": {}}}, &probe{}, &hello.Service{})
	var pe *backend.PolicyError
	if !errors.As(err, &pe) || pe.Service != "no.such.Service" || pe.Method != "" {
		t.Fatalf("a policy for a service not hosted: got %v, want a *PolicyError naming it", err)
	}
	for _, want := range []string{"no.such.Service", probeService, "hello.v1.Hello"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// TestPolicyUnknownMethod: a policy naming a method its service does not
// have is refused, whether it is the service's own policy or one from the
// config, and the error names the service, the name and every valid method
// (unary and streaming). Accepting it would leave the real method under the
// service-wide rule: with "Admn" misspelt, a reader could call Admin.
func TestPolicyUnknownMethod(t *testing.T) {
	misspelt := backend.Policy{
		Rule:    backend.Rule{Roles: []string{"reader"}},
		Methods: map[string]backend.Rule{"Admn": {Roles: []string{"admin"}}, "Ping": {AllowUnauthenticated: true}},
	}
	for _, c := range []struct {
		name       string
		cfg        backend.Config
		svc        *probe
		configured bool
	}{
		{"from config", backend.Config{Policies: map[string]backend.Policy{probeService: misspelt}}, &probe{policy: probePolicy}, true},
		{"built in", backend.Config{}, &probe{policy: misspelt}, false},
		{"built in, replaced by config", backend.Config{Policies: map[string]backend.Policy{probeService: probePolicy}}, &probe{policy: misspelt}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Logger = quietLogger()
			_, err := backend.New(c.cfg, c.svc)
			var pe *backend.PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *backend.PolicyError", err)
			}
			if pe.Service != probeService || pe.Method != "Admn" || pe.Configured != c.configured || pe.Path() != probeService+".methods.Admn" {
				t.Errorf("PolicyError %+v", pe)
			}
			for _, want := range []string{probeService, `"Admn"`, "Admin, Ping, Slow, Watch"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
		})
	}
	// Every real method name, streaming ones included, is accepted.
	ok := backend.Policy{Methods: map[string]backend.Rule{"Ping": {}, "Admin": {}, "Slow": {}, "Watch": {}}}
	if _, err := backend.New(backend.Config{Logger: quietLogger(), Policies: map[string]backend.Policy{probeService: ok}}, &probe{}); err != nil {
		t.Fatalf("a policy naming only real methods: %v", err)
	}
}

func TestDevMode(t *testing.T) {
	addr := start(t, backend.Config{DevMode: true}, &probe{policy: probePolicy})
	conn := dial(t, addr, client.Config{})
	for _, m := range []string{"Ping", "Watch", "Admin"} {
		if got := call(context.Background(), conn, probeService, m); got != codes.OK {
			t.Errorf("dev mode %s: got %v, want OK", m, got)
		}
	}
	for _, bad := range []string{"0.0.0.0:0", ":8005", "10.1.2.3:8005"} {
		_, err := backend.New(backend.Config{DevMode: true, Addr: bad})
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("dev mode on %q: got %v, want a loopback error", bad, err)
		}
	}
}

func TestReflectionAccess(t *testing.T) {
	list := func(conn *grpc.ClientConn) ([]string, codes.Code) {
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
		if err != nil {
			return nil, status.Code(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			return nil, status.Code(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, status.Code(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		return names, codes.OK
	}
	t.Run("open", func(t *testing.T) {
		conn := dial(t, start(t, backend.Config{DevMode: true}, &hello.Service{}), client.Config{})
		names, code := list(conn)
		if code != codes.OK {
			t.Fatal(code)
		}
		joined := strings.Join(names, " ")
		for _, want := range []string{"hello.v1.Hello", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !strings.Contains(joined, want) {
				t.Errorf("reflection lists %v, missing %s", names, want)
			}
		}
	})
	t.Run("authenticated", func(t *testing.T) {
		conn := dial(t, start(t, backend.Config{}, &hello.Service{}), client.Config{})
		if _, code := list(conn); code != codes.Unauthenticated {
			t.Fatalf("anonymous reflection: %v, want Unauthenticated", code)
		}
	})
	t.Run("off", func(t *testing.T) {
		conn := dial(t, start(t, backend.Config{DevMode: true, Reflection: backend.ReflectionOff}, &hello.Service{}), client.Config{})
		if _, code := list(conn); code != codes.Unimplemented {
			t.Fatalf("reflection off: %v, want Unimplemented", code)
		}
	})
}

func TestListenErrorIsReturned(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv, err := backend.New(backend.Config{Addr: l.Addr().String(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Serve on a taken port: %v", err)
	}
}

// TestShutdownDrains shows an in-flight RPC completing while new RPCs are
// refused, and the OnShutdown hooks running after the drain.
func TestShutdownDrains(t *testing.T) {
	p := &probe{policy: backend.Policy{Rule: backend.Rule{AllowUnauthenticated: true}}, entered: make(chan struct{}), release: make(chan struct{})}
	srv, err := backend.New(backend.Config{Addr: "127.0.0.1:0", Logger: quietLogger()}, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	addr := srv.Addr().String()
	hookRan := make(chan struct{})
	srv.OnShutdown(func(context.Context) error { close(hookRan); return nil })

	conn := dial(t, addr, client.Config{})
	slow := make(chan error, 1)
	go func() {
		out := new(wrapperspb.StringValue)
		slow <- conn.Invoke(context.Background(), "/"+probeService+"/Slow", wrapperspb.String("x"), out)
	}()
	<-p.entered

	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()

	// New RPCs, on new connections, are refused once the listener closes.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		c := dial(t, addr, client.Config{})
		code := call(ctx, c, probeService, "Ping")
		c.Close()
		if code == codes.Unavailable {
			break
		}
		if code != codes.OK || ctx.Err() != nil {
			t.Fatalf("new RPC during shutdown: %v", code)
		}
	}
	select {
	case err := <-slow:
		t.Fatalf("in-flight RPC ended before it was released: %v", err)
	case <-hookRan:
		t.Fatal("OnShutdown hook ran before the in-flight RPC finished")
	default:
	}
	close(p.release)
	if err := <-slow; err != nil {
		t.Fatalf("in-flight RPC: %v, want OK", err)
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	<-hookRan
	if err := <-served; !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestShutdownDeadlineCancelsInFlight(t *testing.T) {
	p := &probe{policy: backend.Policy{Rule: backend.Rule{AllowUnauthenticated: true}}, entered: make(chan struct{}), release: make(chan struct{})}
	defer close(p.release)
	srv, err := backend.New(backend.Config{Addr: "127.0.0.1:0", Logger: quietLogger()}, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	conn := dial(t, srv.Addr().String(), client.Config{})
	slow := make(chan error, 1)
	go func() {
		slow <- conn.Invoke(context.Background(), "/"+probeService+"/Slow", wrapperspb.String("x"), new(wrapperspb.StringValue))
	}()
	<-p.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown past its deadline: %v, want context.Canceled", err)
	}
	if err := <-slow; status.Code(err) != codes.Unavailable {
		t.Fatalf("in-flight RPC after a hard stop: %v, want Unavailable", err)
	}
}

func TestTokenFileErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"tokens:\n  - sha256: abc\n    identity: x\n", "64 hex digits"},
		{"tokens:\n  - sha256: " + strings.Repeat("a", 64) + "\n", "identity is empty"},
		{"tokenz: []\n", "unknown field"},
	} {
		path := filepath.Join(t.TempDir(), "t.yaml")
		os.WriteFile(path, []byte(tc.body), 0o600)
		if _, err := backend.LoadTokenFile(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("token file %q: got %v, want an error containing %q", tc.body, err, tc.want)
		}
	}
}

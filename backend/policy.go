package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Rule says who may call: anyone, or authenticated callers holding one of
// Roles. The zero Rule denies everyone.
type Rule struct {
	// AllowUnauthenticated lets any caller in, with or without credentials.
	AllowUnauthenticated bool `json:"allowUnauthenticated,omitempty"`
	// Roles: an authenticated caller needs at least one of them.
	Roles []string `json:"roles,omitempty"`
}

// Policy is a service's authorization policy: a Rule for the whole service,
// and optional Rules per method (by short name, e.g. "SayHello") that replace
// it for that method. The zero Policy denies every call.
type Policy struct {
	Rule
	Methods map[string]Rule `json:"methods,omitempty"`
}

// rule returns the rule for a method.
func (p Policy) rule(method string) Rule {
	if r, ok := p.Methods[method]; ok {
		return r
	}
	return p.Rule
}

// PolicyError is a policy that names a service this server does not host,
// or a method its service does not have. New refuses it: a misspelt method
// name would silently leave the real method under the service-wide rule.
type PolicyError struct {
	// Service is the service the policy is for.
	Service string
	// Method is the method the policy names that Service does not have; ""
	// when Service itself is not hosted.
	Method string
	// Valid lists what was meant to be named: the service's methods (unary
	// and streaming) or, when Method is "", the hosted services. Sorted.
	Valid []string
	// Configured says the policy came from Config.Policies (a config file's
	// grpc.policies), not from the service's own Policy method.
	Configured bool
}

// Path is where the wrong name sits within Config.Policies (or the
// service's Policy): "hello.v1.Hello" or "hello.v1.Hello.methods.SayHelo".
func (e *PolicyError) Path() string {
	if e.Method == "" {
		return e.Service
	}
	return e.Service + ".methods." + e.Method
}

func (e *PolicyError) Error() string {
	valid := strings.Join(e.Valid, ", ")
	if valid == "" {
		valid = "(none)"
	}
	if e.Method == "" {
		return fmt.Sprintf("backend: policies names service %q, which this server does not host; hosted services: %s", e.Service, valid)
	}
	if !e.Configured {
		return fmt.Sprintf("backend: the built-in policy of %s names method %q, which the service does not have (its methods: %s); fix the service's Policy method", e.Service, e.Method, valid)
	}
	return fmt.Sprintf("backend: policies: service %s has no method %q (its methods: %s); fix or remove the name: a rule under a misspelt name leaves the real method under the service-wide rule", e.Service, e.Method, valid)
}

// methodNames lists a service's methods, unary and streaming, sorted.
func methodNames(desc *grpc.ServiceDesc) []string {
	var names []string
	for _, m := range desc.Methods {
		names = append(names, m.MethodName)
	}
	for _, s := range desc.Streams {
		names = append(names, s.StreamName)
	}
	slices.Sort(names)
	return names
}

// check returns a *PolicyError for the first (by name) method in p.Methods
// that desc does not have, or nil. configured is copied to the error.
func (p Policy) check(desc *grpc.ServiceDesc, configured bool) error {
	valid := methodNames(desc)
	for _, m := range slices.Sorted(maps.Keys(p.Methods)) {
		if !slices.Contains(valid, m) {
			return &PolicyError{Service: desc.ServiceName, Method: m, Valid: valid, Configured: configured}
		}
	}
	return nil
}

// ReflectionAccess says who may use server reflection.
type ReflectionAccess string

const (
	// ReflectionOpen lets anyone list services. The default in dev mode.
	ReflectionOpen ReflectionAccess = "open"
	// ReflectionAuthenticated lets any authenticated caller use it. The
	// default outside dev mode.
	ReflectionAuthenticated ReflectionAccess = "authenticated"
	// ReflectionOff does not register the reflection service.
	ReflectionOff ReflectionAccess = "off"
)

// authorizer holds the policies of the hosted services and decides each call.
type authorizer struct {
	authenticators []Authenticator
	policies       map[string]Policy // by full service name
	reflection     ReflectionAccess
	devMode        bool
	logger         *slog.Logger
}

// splitMethod splits "/pkg.Service/Method".
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	service, method, _ = strings.Cut(full, "/")
	return service, method
}

// authenticate runs the authenticators in order; the first that recognises
// the caller wins. No credential at all gives the anonymous identity.
func (a *authorizer) authenticate(ctx context.Context) (Identity, error) {
	id, err := a.identify(ctx)
	switch {
	case errors.Is(err, ErrBadCredentials):
		return Identity{}, status.Error(codes.Unauthenticated, err.Error())
	case err != nil:
		return Identity{}, status.Error(codes.Internal, err.Error())
	}
	return id, nil
}

// authorize decides one call.
func (a *authorizer) authorize(fullMethod string, id Identity) error {
	service, method := splitMethod(fullMethod)
	switch {
	case service == healthpb.Health_ServiceDesc.ServiceName:
		return nil // health is open: load balancers and probes carry no credentials
	case isReflection(service):
		switch {
		case a.reflection == ReflectionOpen || a.devMode:
			return nil
		case id.Anonymous():
			return status.Error(codes.Unauthenticated, "backend: server reflection needs credentials (a bearer token, a client certificate or proxy headers)")
		}
		return nil
	}
	if a.devMode {
		return nil // dev mode: loopback only, checked at listen
	}
	p, ok := a.policies[service]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "backend: service %s has no authorization policy on this server, so every call is denied; list it with a policy", service)
	}
	r := p.rule(method)
	if r.AllowUnauthenticated {
		return nil
	}
	if id.Anonymous() {
		return status.Errorf(codes.Unauthenticated, "backend: %s needs credentials (a bearer token, a client certificate or proxy headers)", fullMethod)
	}
	if len(r.Roles) == 0 || !id.HasAnyRole(r.Roles) {
		return status.Errorf(codes.PermissionDenied, "backend: %s %q may not call %s: it needs one of the roles %v and holds %v", id.Method, id.Name, fullMethod, r.Roles, id.Roles)
	}
	return nil
}

func isReflection(service string) bool {
	return service == "grpc.reflection.v1.ServerReflection" || service == "grpc.reflection.v1alpha.ServerReflection"
}

// check authenticates and authorizes one call, returning the context to run
// it with.
func (a *authorizer) check(ctx context.Context, fullMethod string) (context.Context, error) {
	id, err := a.authenticate(ctx)
	if err != nil {
		return ctx, err
	}
	ctx = ContextWithIdentity(ctx, id)
	return ctx, a.authorize(fullMethod, id)
}

// unary authenticates, authorizes, runs and logs a unary RPC.
func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	ctx, err = a.check(ctx, info.FullMethod)
	if err == nil {
		resp, err = handler(ctx, req)
	}
	a.log(ctx, info.FullMethod, start, err)
	return resp, err
}

// stream authenticates, authorizes, runs and logs a streaming RPC.
func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx, err := a.check(ss.Context(), info.FullMethod)
	if err == nil {
		err = handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
	a.log(ctx, info.FullMethod, start, err)
	return err
}

// contextStream replaces a ServerStream's context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// log records one finished RPC: method, code, duration, caller.
func (a *authorizer) log(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelInfo
	switch code {
	case codes.OK, codes.Canceled, codes.NotFound, codes.AlreadyExists, codes.InvalidArgument,
		codes.FailedPrecondition, codes.ResourceExhausted, codes.Unauthenticated, codes.PermissionDenied:
	default:
		level = slog.LevelWarn
	}
	if !a.logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("duration", time.Since(start)),
	}
	if id, ok := IdentityFromContext(ctx); ok && !id.Anonymous() {
		attrs = append(attrs, slog.String("caller", id.Name), slog.String("auth", id.Method))
	} else {
		attrs = append(attrs, slog.String("caller", "anonymous"))
	}
	if p, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if level == slog.LevelWarn {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	a.logger.LogAttrs(ctx, level, "rpc", attrs...)
}

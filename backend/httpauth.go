package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// AuthenticateHTTP recognises the caller of an HTTP request with the
// server's authenticators, as if its headers were gRPC metadata: a bearer
// token in Authorization, or the proxy headers (X-WEBAUTH-USER,
// X-WEBAUTH-ROLES, trusted by the peer address as for gRPC). Client
// certificates are not seen (the HTTP server does not ask for them). It
// returns the anonymous Identity when the request carries no credential, and
// an error wrapping ErrBadCredentials when it carries a bad one. For HTTP
// endpoints of the same process (the dashboard) that must admit the callers
// the gRPC API admits.
func (s *Server) AuthenticateHTTP(r *http.Request) (Identity, error) {
	md := metadata.MD{}
	for _, h := range []string{"Authorization", "X-Webauth-User", "X-Webauth-Roles"} {
		if vs := r.Header.Values(h); len(vs) > 0 {
			md.Append(h, vs...) // Append lower-cases the key, as gRPC does
		}
	}
	ctx := metadata.NewIncomingContext(r.Context(), md)
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			p, _ := strconv.Atoi(port)
			ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: ip, Port: p}})
		}
	}
	return s.auth.identify(ctx)
}

// identify runs the authenticators, returning their errors unwrapped from
// gRPC statuses.
func (a *authorizer) identify(ctx context.Context) (Identity, error) {
	for _, au := range a.authenticators {
		id, ok, err := au.Authenticate(ctx)
		if err != nil {
			if errors.Is(err, ErrBadCredentials) {
				return Identity{}, err
			}
			return Identity{}, fmt.Errorf("backend: authenticating: %w", err)
		}
		if ok {
			return id, nil
		}
	}
	return Identity{}, nil
}

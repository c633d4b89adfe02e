package backend

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"sigs.k8s.io/yaml"
)

// Identity is who is calling: the result of authentication.
type Identity struct {
	// Name identifies the caller, e.g. "svc-billing" or "alice@example.com".
	Name string
	// Roles the caller holds.
	Roles []string
	// Method names how the identity was established: "token", "mtls",
	// "proxy", or "" for an anonymous caller.
	Method string
}

// Anonymous reports whether no authenticator recognised the caller.
func (id Identity) Anonymous() bool { return id.Method == "" }

// HasAnyRole reports whether the identity holds at least one of roles.
func (id Identity) HasAnyRole(roles []string) bool {
	for _, r := range roles {
		if slices.Contains(id.Roles, r) {
			return true
		}
	}
	return false
}

type identityKey struct{}

// IdentityFromContext returns the caller's identity inside an RPC handler.
func IdentityFromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// ContextWithIdentity returns ctx carrying id; the auth interceptors use it,
// and so can tests of a service's handlers.
func ContextWithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// ErrBadCredentials is wrapped by an Authenticator's error when the caller
// presented credentials that are not valid. It becomes codes.Unauthenticated.
var ErrBadCredentials = errors.New("backend: bad credentials")

// An Authenticator recognises callers from one kind of credential. It
// returns ok=false with a nil error when the call carries no credential of
// its kind, and an error wrapping ErrBadCredentials when it carries a bad
// one. Implementations must be safe for concurrent use.
type Authenticator interface {
	Authenticate(ctx context.Context) (id Identity, ok bool, err error)
}

// TokenAuthenticator recognises "authorization: Bearer TOKEN" metadata by the
// SHA-256 of the token, so the token file holds no secrets.
type TokenAuthenticator struct {
	byHash map[[sha256.Size]byte]Identity
}

// TokenEntry is one line of a token file.
type TokenEntry struct {
	// SHA256 is the hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
	SHA256   string   `json:"sha256"`
	Identity string   `json:"identity"`
	Roles    []string `json:"roles"`
}

// TokenFile is the format of a token file (YAML or JSON).
type TokenFile struct {
	Tokens []TokenEntry `json:"tokens"`
}

// NewTokenAuthenticator builds a TokenAuthenticator from entries.
func NewTokenAuthenticator(entries []TokenEntry) (*TokenAuthenticator, error) {
	a := &TokenAuthenticator{byHash: make(map[[sha256.Size]byte]Identity, len(entries))}
	for i, e := range entries {
		raw, err := hex.DecodeString(strings.TrimSpace(e.SHA256))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("backend: token entry %d (%q): sha256 must be 64 hex digits, the SHA-256 of the token (printf %%s TOKEN | sha256sum)", i, e.Identity)
		}
		if e.Identity == "" {
			return nil, fmt.Errorf("backend: token entry %d: identity is empty; name who holds the token", i)
		}
		var h [sha256.Size]byte
		copy(h[:], raw)
		if _, dup := a.byHash[h]; dup {
			return nil, fmt.Errorf("backend: token entry %d (%q): the same token hash is listed twice", i, e.Identity)
		}
		a.byHash[h] = Identity{Name: e.Identity, Roles: slices.Clone(e.Roles), Method: "token"}
	}
	return a, nil
}

// LoadTokenFile reads a token file (YAML or JSON) and builds a
// TokenAuthenticator from it.
func LoadTokenFile(path string) (*TokenAuthenticator, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("backend: reading token file: %w", err)
	}
	var f TokenFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("backend: token file %s: %w", path, err)
	}
	return NewTokenAuthenticator(f.Tokens)
}

// Authenticate implements Authenticator.
func (a *TokenAuthenticator) Authenticate(ctx context.Context) (Identity, bool, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return Identity{}, false, nil
	}
	scheme, token, found := strings.Cut(vals[0], " ")
	if !found || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return Identity{}, false, fmt.Errorf("%w: the authorization header must be \"Bearer TOKEN\"", ErrBadCredentials)
	}
	id, ok := a.byHash[sha256.Sum256([]byte(strings.TrimSpace(token)))]
	if !ok {
		return Identity{}, false, fmt.Errorf("%w: unknown bearer token", ErrBadCredentials)
	}
	return id, true, nil
}

// MTLSAuthenticator recognises callers by their TLS client certificate,
// verified against ClientCAs. The identity is the certificate's first URI SAN
// (e.g. a SPIFFE ID), else its first DNS SAN, else its subject common name;
// roles come from Roles by identity. The TLS handshake only requests the
// certificate, so a certificate from an unknown CA is answered with a clear
// Unauthenticated error rather than a failed handshake.
type MTLSAuthenticator struct {
	// ClientCAs verifies client certificates. Required.
	ClientCAs *x509.CertPool
	// Roles maps identity to roles. An identity not listed has no roles.
	Roles map[string][]string
}

// CertIdentity returns the identity courier reads from a certificate.
func CertIdentity(cert *x509.Certificate) string {
	switch {
	case len(cert.URIs) > 0:
		return cert.URIs[0].String()
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	default:
		return cert.Subject.CommonName
	}
}

// Authenticate implements Authenticator.
func (a *MTLSAuthenticator) Authenticate(ctx context.Context) (Identity, bool, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Identity{}, false, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return Identity{}, false, nil
	}
	leaf := info.State.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range info.State.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.ClientCAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return Identity{}, false, fmt.Errorf("%w: client certificate %q is not valid for client auth under the trusted client CAs: %v", ErrBadCredentials, leaf.Subject.CommonName, err)
	}
	name := CertIdentity(leaf)
	if name == "" {
		return Identity{}, false, fmt.Errorf("%w: client certificate has no URI SAN, DNS SAN or common name", ErrBadCredentials)
	}
	return Identity{Name: name, Roles: slices.Clone(a.Roles[name]), Method: "mtls"}, true, nil
}

// ProxyAuthenticator trusts the X-WEBAUTH-USER and X-WEBAUTH-ROLES
// (comma-separated) headers set by an authenticating reverse proxy. Enable it
// only behind such a proxy: anyone who can reach the server directly can set
// these headers. TrustedPeers, when set, limits it to calls from those
// networks.
type ProxyAuthenticator struct {
	TrustedPeers []*net.IPNet
}

// Authenticate implements Authenticator.
func (a *ProxyAuthenticator) Authenticate(ctx context.Context) (Identity, bool, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	users := md.Get("x-webauth-user")
	if len(users) == 0 {
		return Identity{}, false, nil
	}
	if len(a.TrustedPeers) > 0 {
		p, _ := peer.FromContext(ctx)
		if p == nil || !ipIn(p.Addr, a.TrustedPeers) {
			return Identity{}, false, fmt.Errorf("%w: X-WEBAUTH-USER sent from %v, which is not a trusted proxy", ErrBadCredentials, peerAddr(p))
		}
	}
	user := strings.TrimSpace(users[0])
	if user == "" {
		return Identity{}, false, fmt.Errorf("%w: X-WEBAUTH-USER is empty", ErrBadCredentials)
	}
	var roles []string
	for _, v := range md.Get("x-webauth-roles") {
		for r := range strings.SplitSeq(v, ",") {
			if r = strings.TrimSpace(r); r != "" {
				roles = append(roles, r)
			}
		}
	}
	return Identity{Name: user, Roles: roles, Method: "proxy"}, true, nil
}

// ipIn reports whether addr's IP is in one of nets. addr is a *net.TCPAddr
// for calls over the gRPC listener, and a host:port string address for
// calls served through GRPCHandler (HTTP/JSON).
func ipIn(addr net.Addr, nets []*net.IPNet) bool {
	var ip net.IP
	switch a := addr.(type) {
	case nil:
		return false
	case *net.TCPAddr:
		ip = a.IP
	default:
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return false
		}
		ip = net.ParseIP(host)
	}
	if ip == nil {
		return false
	}
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func peerAddr(p *peer.Peer) any {
	if p == nil {
		return "an unknown address"
	}
	return p.Addr
}

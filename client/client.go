// Package client is the one way to dial a courier gRPC server (courierd's
// JobService, hello.v1.Hello, any service the backend hosts): plaintext only
// to loopback addresses, TLS with the system roots or a given CA, an optional
// client certificate for mTLS, and an optional bearer token sent with every
// RPC. It is not a job API: wrap the returned connection in the generated
// clients (courierv1.NewJobServiceClient(conn)).
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Config configures Dial. The zero value dials plaintext, which is allowed
// only to loopback addresses.
type Config struct {
	// TLS turns on TLS. With neither CAFile nor the system roots disabled,
	// the server is verified against the system roots.
	TLS bool `json:"tls,omitempty"`
	// CAFile is a PEM bundle to verify the server with instead of the
	// system roots. Setting it implies TLS.
	CAFile string `json:"caFile,omitempty"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `json:"serverName,omitempty"`
	// CertFile and KeyFile are a client certificate for mTLS. They imply TLS.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// Token is a bearer token sent as "authorization: Bearer TOKEN" on every
	// RPC. Over plaintext it is sent only to loopback addresses.
	Token string `json:"-"`
	// TokenFile reads Token from a file (trailing white space trimmed).
	TokenFile string `json:"tokenFile,omitempty"`
}

// ErrInsecure is returned when plaintext is asked for a non-loopback address.
var ErrInsecure = errors.New("client: plaintext is allowed only to loopback addresses")

// Dial returns a connection to addr (host:port). It does not block: the
// connection is made on the first RPC.
func Dial(addr string, cfg Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("client: address %q is not host:port: %w", addr, err)
	}
	token := cfg.Token
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("client: reading token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	useTLS := cfg.TLS || cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != ""
	if useTLS {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	} else {
		if !isLoopback(host) {
			return nil, fmt.Errorf("%w, and %s is not one; configure TLS (tls: true, or caFile) to reach it", ErrInsecure, addr)
		}
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: token, secure: useTLS}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: dialing %s: %w", addr, err)
	}
	return conn, nil
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("client: reading caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: caFile %s holds no PEM certificates", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("client: a client certificate needs both certFile and keyFile")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client: loading certFile/keyFile: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// bearer sends a bearer token. Over plaintext Dial has already checked the
// address is loopback, so it does not require transport security then.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

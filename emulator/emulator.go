// Package emulator runs Google Cloud Pub/Sub emulators for local runs and
// tests: courier's own, in-process (Start), and Google's official one, as a
// child process (StartGoogle). Both return the same *Server handle, so one
// test suite runs against either; clients reach a server through
// PUBSUB_EMULATOR_HOST=Addr, Server.ClientOptions or Server.Dial. With
// Config.InProcess courier's emulator listens on no port at all.
//
// It is not a client library and not a mock: courier's emulator implements the
// google.pubsub.v1 gRPC API and behaves like the real service where it and
// the other emulators differ. Nothing in it talks to Google Cloud.
package emulator

import (
	"context"
	"errors"
	"net"
	"sync"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Kind names an emulator implementation.
type Kind string

const (
	// KindCourier is courier's own emulator.
	KindCourier Kind = "courier"
	// KindGoogle is Google's emulator from the gcloud SDK.
	KindGoogle Kind = "google"
)

// ErrNotInstalled is returned by StartGoogle when the gcloud SDK or its
// pubsub-emulator component cannot be found.
var ErrNotInstalled = errors.New("emulator: Google's Pub/Sub emulator is not installed")

// Server is a running emulator. Close stops it; it is safe to call more than
// once and from several goroutines.
type Server struct {
	// Addr is host:port of the gRPC endpoint, for PUBSUB_EMULATOR_HOST.
	// It is "" for an in-process emulator (Config.InProcess).
	Addr string
	// Kind says which emulator this is.
	Kind Kind
	// JWKSURL is where courier's emulator serves, over plain HTTP on the
	// gRPC port, the public keys (a JSON Web Key Set) of the OIDC tokens it
	// sends to push endpoints: http://Addr/oauth2/v3/certs. It is "" for an
	// in-process emulator (use JWKS) and for Google's, which sends none.
	JWKSURL string

	dial      func(context.Context) (net.Conn, error) // in-process only
	keys      *signer                                 // courier's emulator only
	eng       *engine                                 // courier's emulator only, for tests
	closeOnce sync.Once
	closeErr  error
	close     func() error
}

// JWKSPath is the HTTP path of courier's emulator's JSON Web Key Set.
const JWKSPath = "/oauth2/v3/certs"

// inProcessTarget is the gRPC target of an in-process emulator; the
// context dialer, not the name, reaches it.
const inProcessTarget = "passthrough:///courier-emulator.in-process"

// ClientOptions point a Google Cloud client (pubsub.NewClient) at s, in
// either mode: no credentials, plaintext gRPC, no telemetry.
func (s *Server) ClientOptions() []option.ClientOption {
	if s.dial == nil {
		return ClientOptions(s.Addr)
	}
	return []option.ClientOption{
		option.WithEndpoint(inProcessTarget),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithContextDialer(s.dialer)),
		option.WithTelemetryDisabled(),
	}
}

// Dial returns a new gRPC connection to s, in either mode, for the raw
// google.pubsub.v1 clients (pubsubpb.NewPublisherClient and the like).
// The caller closes it.
func (s *Server) Dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	if s.dial == nil {
		return grpc.NewClient(s.Addr, opts...)
	}
	return grpc.NewClient(inProcessTarget, append(opts, grpc.WithContextDialer(s.dialer))...)
}

func (s *Server) dialer(ctx context.Context, _ string) (net.Conn, error) { return s.dial(ctx) }

// JWKS returns the JSON Web Key Set that verifies the OIDC tokens courier's
// emulator sends to push endpoints (the document JWKSURL serves), or nil
// for Google's emulator.
func (s *Server) JWKS() []byte {
	if s.keys == nil {
		return nil
	}
	return s.keys.jwks()
}

// Close stops the emulator and releases what it holds. Later calls return
// the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.close != nil {
			s.closeErr = s.close()
		}
	})
	return s.closeErr
}

// ClientOptions point a Google Cloud client (pubsub.NewClient) at the
// emulator on addr the way PUBSUB_EMULATOR_HOST does: no credentials,
// plaintext gRPC, no telemetry. Server.ClientOptions does the same for any
// Server, in-process ones included.
func ClientOptions(addr string) []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithTelemetryDisabled(),
	}
}

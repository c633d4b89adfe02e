// Package emulator runs Google Cloud Pub/Sub emulators for local runs and
// tests: courier's own, in-process (Start), and Google's official one, as a
// child process (StartGoogle). Both return the same *Server handle, so one
// test suite runs against either; clients reach a server through
// PUBSUB_EMULATOR_HOST=Addr or by dialing Addr without credentials.
//
// It is not a client library and not a mock: courier's emulator implements the
// google.pubsub.v1 gRPC API and behaves like the real service where it and
// the other emulators differ. Nothing in it talks to Google Cloud.
package emulator

import (
	"errors"
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
	Addr string
	// Kind says which emulator this is.
	Kind Kind

	closeOnce sync.Once
	closeErr  error
	close     func() error
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
// plaintext gRPC, no telemetry.
func ClientOptions(addr string) []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithTelemetryDisabled(),
	}
}

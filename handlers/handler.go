package handlers

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// ProgressFunc records a running job's progress: fraction in 0..1 and a
// human-readable message. The runner (package ingest) supplies it.
type ProgressFunc func(ctx context.Context, fraction float64, message string) error

// Request is one attempt of a job as the untyped handler chain sees it.
// The runner builds it; middleware may read it but must not change it.
type Request struct {
	ID          string            // job ID (the ce-id of its message)
	Type        string            // full protobuf name of Payload
	Attempt     int               // this attempt, from 1
	MaxAttempts int               // attempts allowed, from the job or the handler's Config
	Labels      map[string]string // the job's labels; never nil
	Payload     proto.Message     // the decoded payload
	Progress    ProgressFunc      // nil means progress is discarded
	// TraceParent and TraceState are the W3C trace context the job's
	// message carried ("" when none): tracing middleware parents its span
	// on them.
	TraceParent, TraceState string
	// Source and MessageID say where the attempt came from, for tracing
	// and logs: the subscription (or other source) and the message's ID
	// there. "" when unknown.
	Source, MessageID string
}

// Handler runs one attempt of a job and returns its result. A nil result with
// a nil error is a success without a result. Errors are retryable unless
// IsPermanent reports true.
type Handler func(ctx context.Context, req *Request) (proto.Message, error)

// Middleware wraps a Handler. Middleware must call next at most once and
// return its result and error unchanged unless it documents otherwise.
type Middleware func(next Handler) Handler

// ChainMiddleware applies mws to h so that the first one runs first
// (outermost): ChainMiddleware(h, a, b) is a(b(h)).
func ChainMiddleware(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// protoMessage is proto.Message, named shorter for signatures in this package.
type protoMessage = proto.Message

// Package handlers is courier's handler registry: typed handler functions
// registered per protobuf message type (Register), the untyped Handler they
// are adapted to, and the middleware a runner wraps them in (RateLimit over
// a Limiter, Concurrency, Timeout, Recover: func(Handler) Handler, one per
// file). The registry keeps each handler bare with its Config; the runner
// (package ingest) composes the chain when it runs a job. Errors a handler
// returns are retryable unless wrapped with Permanent; RetryAfter(d) and
// Snooze(d) ask for the next run after d (the runner keeps the job waiting
// in the store, so d may be hours), Snooze without counting the attempt.
//
// It is for the code that runs jobs (package ingest) and for the code that
// registers them (courierd, the demo stack in handlers/demo). It is not a
// consumer: it knows nothing of Pub/Sub subscriptions, acks or the job store,
// and nothing of gRPC. Registries are values built by the caller; there is no
// global registry.
package handlers

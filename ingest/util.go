package ingest

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// alreadyExists reports whether a Pub/Sub admin call failed because the
// resource exists (the client returns gRPC status errors).
func alreadyExists(err error) bool { return status.Code(err) == codes.AlreadyExists }

// notFound reports whether a Pub/Sub admin call failed because the resource
// does not exist.
func notFound(err error) bool { return err != nil && status.Code(err) == codes.NotFound }

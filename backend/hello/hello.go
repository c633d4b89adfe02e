// Package hello is the seed's sample service, hello.v1.Hello, and the worked
// example of adding a service to the backend (README, "Adding a service"):
// implement the generated server interface, and the backend.Service methods
// that say how to register it and who may call it. It is not for anything
// else.
package hello

import (
	"context"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/courierq/courier/backend"
	hellov1 "github.com/courierq/courier/proto/hello/v1"
)

// MaxNameLength bounds SayHelloRequest.name, in characters.
const MaxNameLength = 256

// Service implements hello.v1.Hello.
type Service struct {
	hellov1.UnimplementedHelloServer
	// Auth is who may call. The zero value denies everyone (outside dev
	// mode); Open allows anyone.
	Auth backend.Policy
}

// Open is a policy that lets anyone say hello.
var Open = backend.Policy{Rule: backend.Rule{AllowUnauthenticated: true}}

var _ backend.Service = (*Service)(nil)

// Desc implements backend.Service.
func (s *Service) Desc() *grpc.ServiceDesc { return &hellov1.Hello_ServiceDesc }

// Register implements backend.Service.
func (s *Service) Register(r grpc.ServiceRegistrar) { hellov1.RegisterHelloServer(r, s) }

// Policy implements backend.Service.
func (s *Service) Policy() backend.Policy { return s.Auth }

// SayHello greets req.Name ("world" when empty).
func (s *Service) SayHello(ctx context.Context, req *hellov1.SayHelloRequest) (*hellov1.SayHelloResponse, error) {
	name := req.GetName()
	if n := utf8.RuneCountInString(name); n > MaxNameLength {
		return nil, status.Errorf(codes.InvalidArgument, "hello: name is %d characters long; the limit is %d", n, MaxNameLength)
	}
	if name == "" {
		name = "world"
	}
	return &hellov1.SayHelloResponse{Message: fmt.Sprintf("Hello, %s!", name)}, nil
}

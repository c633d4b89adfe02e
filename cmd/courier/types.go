package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jhump/protoreflect/v2/grpcreflect"
	"github.com/jhump/protoreflect/v2/protoresolve"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// types finds message types: those compiled into the CLI (courier.v1 and
// the well-known types) first, then any the server knows, through its gRPC
// server reflection (asked on first need, then cached). Messages of server
// types are dynamic (dynamicpb). It implements protojson's and proto's
// resolver interfaces.
type types struct {
	addr string
	// server returns the server's types, asking on first call.
	server func() (protoresolve.TypeResolver, error)
}

// typeResolver returns the command's type resolver; ctx bounds the
// reflection stream it may open.
func (g *globals) typeResolver(ctx context.Context) *types {
	if g.types == nil {
		g.types = &types{addr: g.target, server: sync.OnceValues(func() (protoresolve.TypeResolver, error) {
			conn, err := g.connect()
			if err != nil {
				return nil, err
			}
			g.refl = grpcreflect.NewClientAuto(ctx, conn)
			return g.refl.AsResolver().AsTypeResolver(), nil
		})}
	}
	return g.types
}

// lookup tries the compiled-in types, then the server's.
func lookup[T any](t *types, local func() (T, error), remote func(protoresolve.TypeResolver) (T, error)) (T, error) {
	if v, err := local(); err == nil {
		return v, nil
	}
	r, err := t.server()
	if err != nil {
		var zero T
		return zero, err
	}
	return remote(r)
}

// FindMessageByName implements protoregistry.MessageTypeResolver.
func (t *types) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	return lookup(t, func() (protoreflect.MessageType, error) { return protoregistry.GlobalTypes.FindMessageByName(name) },
		func(r protoresolve.TypeResolver) (protoreflect.MessageType, error) { return r.FindMessageByName(name) })
}

// FindMessageByURL implements protoregistry.MessageTypeResolver.
func (t *types) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	name := url
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		name = url[i+1:]
	}
	return t.FindMessageByName(protoreflect.FullName(name))
}

// FindExtensionByName implements protoregistry.ExtensionTypeResolver.
func (t *types) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return lookup(t, func() (protoreflect.ExtensionType, error) { return protoregistry.GlobalTypes.FindExtensionByName(name) },
		func(r protoresolve.TypeResolver) (protoreflect.ExtensionType, error) {
			return r.FindExtensionByName(name)
		})
}

// FindExtensionByNumber implements protoregistry.ExtensionTypeResolver.
func (t *types) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return lookup(t, func() (protoreflect.ExtensionType, error) {
		return protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
	}, func(r protoresolve.TypeResolver) (protoreflect.ExtensionType, error) {
		return r.FindExtensionByNumber(message, field)
	})
}

// message finds a message type for enqueue, with an error that says why not.
func (t *types) message(name string) (protoreflect.MessageType, error) {
	mt, err := t.FindMessageByName(protoreflect.FullName(name))
	if err == nil {
		return mt, nil
	}
	addr := t.addr
	switch st, _ := status.FromError(err); {
	case errors.Is(err, protoregistry.NotFound):
		return nil, fmt.Errorf("unknown message type %q: courierd at %s does not know it (its server reflection has no such message); check the full name, e.g. courier.demo.v1.Echo", name, addr)
	case st.Code() == codes.Unimplemented:
		return nil, fmt.Errorf("unknown message type %q: courierd at %s has server reflection off (grpc.reflection: off), so the CLI cannot learn its types; turn it on, or use a client built with the type", name, addr)
	case st.Code() == codes.Unavailable, st.Code() == codes.Unauthenticated, st.Code() == codes.PermissionDenied:
		return nil, fmt.Errorf("looking up message type %q through server reflection: %w", name, explain(addr, err))
	}
	return nil, fmt.Errorf("looking up message type %q through courierd's server reflection at %s: %w", name, addr, err)
}

package emulator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/bufbuild/protocompile"
	"github.com/linkedin/goavro/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// A codec checks that message data conforms to one schema revision.
// Avro definitions are parsed by goavro (Avro's JSON encoding for JSON,
// its binary encoding for BINARY); protocol buffer definitions (.proto
// text with exactly one top-level message, or a compiled
// FileDescriptorSet) by protocompile, and messages by protojson (JSON) and
// proto (BINARY) against the compiled descriptor.
type codec interface {
	// check returns nil when data conforms, else what did not.
	check(data []byte, enc pubsubpb.Encoding) error
}

// compileSchema parses a schema's definition, or says why it is invalid.
func compileSchema(pb *pubsubpb.Schema) (codec, error) {
	switch pb.Type {
	case pubsubpb.Schema_AVRO:
		if pb.GetCompiledProtoSchema() != nil {
			return nil, errors.New("compiled_proto_schema is only for PROTOCOL_BUFFER schemas")
		}
		if strings.TrimSpace(pb.Definition) == "" {
			return nil, errors.New("the definition is empty")
		}
		c, err := goavro.NewCodec(pb.Definition)
		if err != nil {
			return nil, fmt.Errorf("the Avro definition is invalid: %v", err)
		}
		return avroCodec{c}, nil
	case pubsubpb.Schema_PROTOCOL_BUFFER:
		if cps := pb.GetCompiledProtoSchema(); cps != nil {
			if pb.Definition != "" {
				return nil, errors.New("set either definition or compiled_proto_schema, not both")
			}
			return compiledProto(cps)
		}
		return protoText(pb.Definition)
	default:
		return nil, fmt.Errorf("invalid schema type %v: use AVRO or PROTOCOL_BUFFER", pb.Type)
	}
}

type avroCodec struct{ c *goavro.Codec }

func (a avroCodec) check(data []byte, enc pubsubpb.Encoding) error {
	switch enc {
	case pubsubpb.Encoding_JSON:
		_, rest, err := a.c.NativeFromTextual(data)
		if err != nil {
			return err
		}
		if len(strings.TrimSpace(string(rest))) > 0 {
			return fmt.Errorf("%d bytes follow the JSON value", len(rest))
		}
	case pubsubpb.Encoding_BINARY:
		_, rest, err := a.c.NativeFromBinary(data)
		if err != nil {
			return err
		}
		if len(rest) > 0 {
			return fmt.Errorf("%d bytes follow the Avro value", len(rest))
		}
	default:
		return errBadEncoding(enc)
	}
	return nil
}

func errBadEncoding(enc pubsubpb.Encoding) error {
	return fmt.Errorf("invalid encoding %v: use JSON or BINARY", enc)
}

type protoCodec struct {
	md protoreflect.MessageDescriptor
}

func (p protoCodec) check(data []byte, enc pubsubpb.Encoding) error {
	m := dynamicpb.NewMessage(p.md)
	switch enc {
	case pubsubpb.Encoding_JSON:
		return protojson.Unmarshal(data, m)
	case pubsubpb.Encoding_BINARY:
		return proto.Unmarshal(data, m)
	default:
		return errBadEncoding(enc)
	}
}

// protoText compiles a .proto file's text. The well-known types
// (google/protobuf/*.proto) may be imported; nothing else.
func protoText(def string) (codec, error) {
	if strings.TrimSpace(def) == "" {
		return nil, errors.New("the definition is empty")
	}
	const file = "schema.proto"
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: protocompile.SourceAccessorFromMap(map[string]string{file: def}),
		}),
	}
	files, err := c.Compile(context.Background(), file)
	if err != nil {
		return nil, fmt.Errorf("the protocol buffer definition is invalid: %v", err)
	}
	msgs := files[0].Messages()
	if msgs.Len() != 1 {
		return nil, fmt.Errorf("the protocol buffer definition must define exactly one top-level message type, it defines %d", msgs.Len())
	}
	return protoCodec{msgs.Get(0)}, nil
}

// compiledProto builds a codec from a FileDescriptorSet and a root message.
func compiledProto(cps *pubsubpb.CompiledProtoSchema) (codec, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(cps.CompiledBytes, &set); err != nil {
		return nil, fmt.Errorf("compiled_proto_schema.compiled_bytes is not a FileDescriptorSet: %v", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("compiled_proto_schema.compiled_bytes is invalid: %v", err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(cps.RootMessage))
	if errors.Is(err, protoregistry.NotFound) {
		return nil, fmt.Errorf("compiled_proto_schema.root_message %q is not defined in compiled_bytes", cps.RootMessage)
	}
	if err != nil {
		return nil, err
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("compiled_proto_schema.root_message %q is not a message type", cps.RootMessage)
	}
	return protoCodec{md}, nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/client"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// globals are the flags every command takes, and the connection they make.
type globals struct {
	addr      string
	output    string
	tokenFile string
	caFile    string
	tls       bool

	stdout, stderr io.Writer
	conn           *grpc.ClientConn
}

func (g *globals) register(fs *flag.FlagSet) {
	addr := os.Getenv("COURIER_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8005"
	}
	if g.addr == "" {
		g.addr = addr
	}
	if g.output == "" {
		g.output = "text"
	}
	fs.StringVar(&g.addr, "addr", g.addr, "courierd's gRPC `address`")
	fs.StringVar(&g.output, "o", g.output, "output `format`: text or json")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "bearer token `file`")
	fs.StringVar(&g.caFile, "ca-file", g.caFile, "CA `file` to verify the server (turns on TLS)")
	fs.BoolVar(&g.tls, "tls", g.tls, "use TLS with the system roots")
}

func (g *globals) validate() error {
	if g.output != "text" && g.output != "json" {
		return fmt.Errorf("-o %q: the formats are text and json", g.output)
	}
	return nil
}

// jobs dials the server (once) and returns a JobService client.
func (g *globals) jobs() (courierv1.JobServiceClient, error) {
	if g.conn == nil {
		cfg := client.Config{TLS: g.tls, CAFile: g.caFile, TokenFile: g.tokenFile, Token: os.Getenv("COURIER_TOKEN")}
		conn, err := client.Dial(g.addr, cfg)
		if err != nil {
			return nil, err
		}
		g.conn = conn
	}
	return courierv1.NewJobServiceClient(g.conn), nil
}

func (g *globals) close() {
	if g.conn != nil {
		g.conn.Close()
	}
}

// printJSON prints m as protojson, one document.
func (g *globals) printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, string(b))
	return err
}

// call wraps an RPC error with the server address and a hint.
func (g *globals) callErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return explain(g.addr, err)
}

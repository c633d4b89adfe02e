package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/jhump/protoreflect/v2/grpcreflect"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/client"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// globals are the settings every command shares (global flags, environment,
// profile), the connection they make, and where output goes.
type globals struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	// Global flags, as given.
	addr, output, profile, configFile string
	tokenFile, caFile, certFile       string
	keyFile, serverName               string
	tls                               bool

	// Settled by settle: what the commands use.
	dial   client.Config
	target string // the address
	format string // "text" or "json"
	conn   *grpc.ClientConn
	refl   *grpcreflect.Client
	types  *types
}

// flags registers the global flags on root (persistent: they may come
// before or after the command).
func (g *globals) flags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.addr, "addr", "", "courierd's gRPC `HOST:PORT` (default 127.0.0.1:8005, or $COURIER_ADDR)")
	f.StringVarP(&g.output, "output", "o", "", "output `format`: text or json (json prints protojson)")
	f.StringVar(&g.profile, "profile", "", "profile `name` in the profile file (or $COURIER_PROFILE)")
	f.StringVar(&g.configFile, "config", "", "profile `file` (or $COURIER_CONFIG; default $XDG_CONFIG_HOME/courier/config.yaml)")
	f.StringVar(&g.tokenFile, "token-file", "", "bearer token `file` (or $COURIER_TOKEN with the token itself)")
	f.StringVar(&g.caFile, "ca-file", "", "verify the server with this CA `file` (turns on TLS)")
	f.StringVar(&g.certFile, "cert-file", "", "client certificate `file` for mTLS (turns on TLS; with --key-file)")
	f.StringVar(&g.keyFile, "key-file", "", "client certificate's private key `file` for mTLS")
	f.StringVar(&g.serverName, "server-name", "", "`name` to verify in the server's certificate, when it differs from the address")
	f.BoolVar(&g.tls, "tls", false, "use TLS with the system roots")
	root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.RegisterFlagCompletionFunc("profile", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		pf, _, err := loadProfiles(g.configFile, g.getenv)
		if err != nil || pf == nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return pf.names(), cobra.ShellCompDirectiveNoFileComp
	})
}

// settle combines flags, environment and profile into the settings the
// commands use: a flag given wins, then the environment, then the profile,
// then the default.
func (g *globals) settle(cmd *cobra.Command) error {
	pf, dir, err := loadProfiles(g.configFile, g.getenv)
	if err != nil {
		return err
	}
	name := first(g.profile, g.getenv("COURIER_PROFILE"))
	p, err := pf.pick(name)
	if err != nil {
		return err
	}
	p = p.resolvePaths(dir)
	changed := cmd.Flags().Changed
	g.target = first(g.addr, g.getenv("COURIER_ADDR"), p.Addr, "127.0.0.1:8005")
	g.format = first(g.output, p.Output, "text")
	if g.format != "text" && g.format != "json" {
		return fmt.Errorf("-o %q: the formats are text and json", g.format)
	}
	g.dial = client.Config{
		TLS:        g.tls || (!changed("tls") && p.TLS),
		CAFile:     first(g.caFile, p.CAFile),
		CertFile:   first(g.certFile, p.CertFile),
		KeyFile:    first(g.keyFile, p.KeyFile),
		ServerName: first(g.serverName, p.ServerName),
	}
	if (g.dial.CertFile == "") != (g.dial.KeyFile == "") {
		return fmt.Errorf("mTLS needs both a client certificate and its key: --cert-file %q, --key-file %q", g.dial.CertFile, g.dial.KeyFile)
	}
	switch tok := g.getenv("COURIER_TOKEN"); {
	case g.tokenFile != "":
		g.dial.TokenFile = g.tokenFile
	case tok != "":
		g.dial.Token = tok
	default:
		g.dial.TokenFile = p.TokenFile
	}
	return nil
}

// first returns the first non-empty string.
func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// connect dials the server once.
func (g *globals) connect() (*grpc.ClientConn, error) {
	if g.conn == nil {
		conn, err := client.Dial(g.target, g.dial)
		if err != nil {
			return nil, err
		}
		g.conn = conn
	}
	return g.conn, nil
}

// jobs returns a JobService client.
func (g *globals) jobs() (courierv1.JobServiceClient, error) {
	conn, err := g.connect()
	if err != nil {
		return nil, err
	}
	return courierv1.NewJobServiceClient(conn), nil
}

// close ends the reflection stream and the connection.
func (g *globals) close() {
	if g.refl != nil {
		g.refl.Reset()
	}
	if g.conn != nil {
		g.conn.Close()
	}
}

// printJSON prints m as protojson, one document; Any fields resolve through
// the server's types.
func (g *globals) printJSON(ctx context.Context, m proto.Message) error {
	b, err := protojson.MarshalOptions{Resolver: g.typeResolver(ctx)}.Marshal(m)
	if err != nil {
		return err
	}
	// protojson varies its white space on purpose; print it stably.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, out.String())
	return err
}

// callErr explains an RPC error with the server address and a hint.
func (g *globals) callErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return explain(g.target, err)
}

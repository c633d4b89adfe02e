package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/courierq/courier/client"
	hellov1 "github.com/courierq/courier/proto/hello/v1"
)

// TestRunServesAndShutsDown runs courierd with a config on free ports, calls
// it over gRPC and HTTP, then cancels and checks a clean exit.
func TestRunServesAndShutsDown(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "courierd.yaml")
	os.WriteFile(cfgPath, []byte("grpc:\n  addr: 127.0.0.1:0\n  devMode: true\nhttp:\n  addr: 127.0.0.1:0\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyc := make(chan *stack, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--config", cfgPath}, io.Discard, func(st *stack) { readyc <- st }) }()
	var st *stack
	select {
	case st = <-readyc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}

	conn, err := client.Dial(st.grpcAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := hellov1.NewHelloClient(conn).SayHello(ctx, &hellov1.SayHelloRequest{Name: "x"})
	if err != nil || resp.Message != "Hello, x!" {
		t.Fatalf("SayHello: %v %v", resp, err)
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "hello.v1.Hello"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	r, err := http.Get("http://" + st.httpAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("/healthz: %d %q", r.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(cfgPath, []byte("grpc:\n  addr: 0.0.0.0:0\n  devMode: true\n"), 0o600)
	err := run(context.Background(), []string{"--config", cfgPath}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("run with a non-loopback dev config: %v", err)
	}
}

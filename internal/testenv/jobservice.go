package testenv

import (
	"io"
	"log/slog"
	"testing"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/jobs"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// JobService serves a courier.v1.JobService over store, accepting types, on
// a loopback gRPC server in dev mode, and returns the server's address and a
// client of it. t.Cleanup stops both.
func JobService(t testing.TB, store jobs.Store, types jobservice.TypeMap) (string, courierv1.JobServiceClient) {
	t.Helper()
	cfg := jobservice.Config{Store: store, Types: types}
	cfg.Schedules, _ = store.(jobs.Schedules)
	cfg.TypePauser, _ = store.(jobs.TypePauser)
	svc, err := jobservice.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := backend.New(backend.Config{Addr: "127.0.0.1:0", DevMode: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, svc)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	conn, err := client.Dial(srv.Addr().String(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv.Addr().String(), courierv1.NewJobServiceClient(conn)
}

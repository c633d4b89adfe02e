package jobservice_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// TestControlsAuthorization: the control methods are JobService methods
// like the others: a policy names them (a misspelt name would be refused at
// start), and with no rule for them they fall under the service's rule, which
// denies by default.
func TestControlsAuthorization(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tokens := testenv.TokenFile(t, map[string][2]string{"reader-token": {"r", "reader"}, "ops-token": {"o", "ops"}})
	policy := backend.Policy{Rule: backend.Rule{Roles: []string{"reader"}}, Methods: map[string]backend.Rule{
		"PauseJobType": {Roles: []string{"ops"}}, "ResumeJobType": {Roles: []string{"ops"}},
		"CreateSchedule": {Roles: []string{"ops"}}, "DeleteSchedule": {Roles: []string{"ops"}},
	}}
	for _, c := range []struct {
		name   string
		policy backend.Policy
		token  string
		want   map[string]codes.Code
	}{
		{"no credentials", policy, "", map[string]codes.Code{"ListSchedules": codes.Unauthenticated, "PauseJobType": codes.Unauthenticated}},
		{"reader", policy, "reader-token", map[string]codes.Code{"ListSchedules": codes.OK, "ListPausedJobTypes": codes.OK, "PauseJobType": codes.PermissionDenied, "DeleteSchedule": codes.PermissionDenied}},
		{"ops", policy, "ops-token", map[string]codes.Code{"PauseJobType": codes.OK, "ResumeJobType": codes.OK, "DeleteSchedule": codes.NotFound}},
		{"zero policy", backend.Policy{}, "ops-token", map[string]codes.Code{"ListSchedules": codes.PermissionDenied, "PauseJobType": codes.PermissionDenied, "CreateSchedule": codes.PermissionDenied}},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc, err := jobservice.New(jobservice.Config{Store: store, Types: jobservice.TypeMap{"courier.demo.v1.Echo": {}}, Auth: c.policy,
				Schedules: store, TypePauser: store})
			if err != nil {
				t.Fatal(err)
			}
			srv, err := backend.New(backend.Config{Addr: "127.0.0.1:0", Auth: backend.AuthConfig{TokensFile: tokens}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, svc)
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Listen(); err != nil {
				t.Fatal(err)
			}
			go srv.Serve()
			t.Cleanup(func() { srv.Close() })
			conn, err := client.Dial(srv.Addr().String(), client.Config{Token: c.token})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			api := courierv1.NewJobServiceClient(conn)
			calls := map[string]func() error{
				"ListSchedules": func() error { _, err := api.ListSchedules(ctx, &courierv1.ListSchedulesRequest{}); return err },
				"ListPausedJobTypes": func() error {
					_, err := api.ListPausedJobTypes(ctx, &courierv1.ListPausedJobTypesRequest{})
					return err
				},
				"PauseJobType": func() error {
					_, err := api.PauseJobType(ctx, &courierv1.PauseJobTypeRequest{Type: "courier.demo.v1.Echo"})
					return err
				},
				"ResumeJobType": func() error {
					_, err := api.ResumeJobType(ctx, &courierv1.ResumeJobTypeRequest{Type: "courier.demo.v1.Echo"})
					return err
				},
				"CreateSchedule": func() error {
					_, err := api.CreateSchedule(ctx, &courierv1.CreateScheduleRequest{Schedule: &courierv1.Schedule{Name: "x"}})
					return err
				},
				"DeleteSchedule": func() error {
					_, err := api.DeleteSchedule(ctx, &courierv1.DeleteScheduleRequest{Name: "none"})
					return err
				},
			}
			for m, want := range c.want {
				if got := status.Code(calls[m]()); got != want {
					t.Errorf("%s: %v, want %v", m, got, want)
				}
			}
		})
	}
	// A policy with a misspelt control method is refused.
	svc, _ := jobservice.New(jobservice.Config{Store: store, Types: jobservice.TypeMap{}, Auth: backend.Policy{Methods: map[string]backend.Rule{"PauseType": {}}}})
	if _, err := backend.New(backend.Config{Addr: "127.0.0.1:0"}, svc); err == nil {
		t.Fatal("a policy naming PauseType (not a method) was accepted")
	}
}

// TestControlsWithoutStoreSupport: a store that lacks the optional
// interfaces makes the control RPCs answer FailedPrecondition.
func TestControlsWithoutStoreSupport(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	_, api := testenv.JobService(t, plainStore{store}, jobservice.TypeMap{"courier.demo.v1.Echo": {}})
	_, err = api.ListSchedules(ctx, &courierv1.ListSchedulesRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ListSchedules on a store without schedules: %v, want FailedPrecondition", err)
	}
	_, err = api.PauseJobType(ctx, &courierv1.PauseJobTypeRequest{Type: "courier.demo.v1.Echo"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("PauseJobType on a store without paused types: %v, want FailedPrecondition", err)
	}
}

// plainStore hides the optional interfaces of the store it wraps.
type plainStore struct{ jobs.Store }

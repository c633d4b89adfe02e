package courier_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/couriertest"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/jobstest"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/courierq/courier/jobs/sqlite"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// The job controls through the gRPC API, on each store: schedules, paused
// job types, snooze and retry later.

// controlStores are the store kinds that keep schedules, paused types and
// snoozed jobs (jobs.Schedules, jobs.TypePauser, jobs.Snoozer) and batches
// (jobs.BatchEnqueuer); the Spanner store has none of them, and the
// JobService tests check what it answers instead.
func controlStores() []testenv.StoreKind {
	return []testenv.StoreKind{testenv.SQLite, testenv.Postgres}
}

// clockedStore opens a fresh store of kind whose clock is now; for
// PostgreSQL, in schema (a fresh one when "").
func clockedStore(t *testing.T, kind testenv.StoreKind, url, schema string, now func() time.Time) jobs.Store {
	t.Helper()
	ctx := context.Background()
	var (
		s   jobs.Store
		err error
	)
	switch kind {
	case testenv.SQLite:
		s, err = sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db"), Now: now})
	case testenv.Postgres:
		if schema == "" {
			url, schema = testenv.PostgresSchema(t)
		}
		s, err = postgres.Open(ctx, postgres.Config{URL: url, Schema: schema, MaxConns: 6, Now: now})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fastConfig is couriertest's config with the loops that the tests wait
// on polling often.
func fastConfig(t *testing.T) *config.Config {
	cfg := couriertest.Config(t.TempDir())
	cfg.Jobs.SchedulePoll = config.Duration(10 * time.Millisecond)
	cfg.Jobs.RelayPollInterval = config.Duration(10 * time.Millisecond)
	return cfg
}

// eventually polls cond until it holds, failing the test after
// couriertest.Timeout.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(couriertest.Timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, couriertest.Timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantCode(t *testing.T, what string, err error, c codes.Code, mention string) {
	t.Helper()
	if status.Code(err) != c || !strings.Contains(err.Error(), mention) {
		t.Fatalf("%s: err = %v; want %v mentioning %q", what, err, c, mention)
	}
}

func echoAny(t *testing.T, msg string) *anypb.Any {
	a, err := anypb.New(&demov1.Echo{Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestScheduleFiresOncePerTickAcrossThreeNodes: three Nodes share one
// PostgreSQL store and one clock that the test moves a minute at a time;
// each of N ticks of a cron schedule enqueues exactly one job, whichever
// Node's scheduler gets there first, and each job runs.
func TestScheduleFiresOncePerTickAcrossThreeNodes(t *testing.T) {
	url, schema := testenv.PostgresSchema(t)
	ctx := context.Background()
	// Half past a minute: each step puts the clock 30 s after a tick.
	clk := jobstest.NewClock(time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second))
	reg, _ := countingRegistry(t)
	var nodes []*couriertest.Node
	for range 3 {
		s := clockedStore(t, testenv.Postgres, url, schema, clk.Now)
		nodes = append(nodes, couriertest.StartConfig(t, fastConfig(t), courier.WithRegistry(reg), courier.WithStore(s), courier.WithClock(clk.Now)))
	}
	api := courierv1.NewJobServiceClient(nodes[0].Conn)
	sc, err := api.CreateSchedule(ctx, &courierv1.CreateScheduleRequest{Schedule: &courierv1.Schedule{
		Name: "every-minute", Payload: echoAny(t, "tick"), Cron: "* * * * *", TimeZone: "America/New_York",
		Labels: map[string]string{"from": "schedule"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	first := sc.GetNextTime().AsTime()
	if want := clk.Now().Truncate(time.Minute).Add(time.Minute); !first.Equal(want) {
		t.Fatalf("next_time = %v, want %v", first, want)
	}
	const n = 30
	for i := range n {
		clk.Add(time.Minute)
		tick := first.Add(time.Duration(i) * time.Minute)
		other := courierv1.NewJobServiceClient(nodes[(i+1)%3].Conn)
		eventually(t, fmt.Sprintf("tick %d fired", i+1), func() (bool, error) {
			list, err := other.ListSchedules(ctx, &courierv1.ListSchedulesRequest{})
			if err != nil || len(list.GetSchedules()) != 1 {
				return false, fmt.Errorf("ListSchedules = %v, %v", list, err)
			}
			return list.GetSchedules()[0].GetLastTime().AsTime().Equal(tick), nil
		})
	}
	list, err := api.ListJobs(ctx, &courierv1.ListJobsRequest{Type: "courier.demo.v1.Echo", PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetJobs()) != n {
		t.Fatalf("%d ticks enqueued %d jobs, want %d", n, len(list.GetJobs()), n)
	}
	keys := map[string]bool{}
	for _, j := range list.GetJobs() {
		keys[j.GetIdempotencyKey()] = true
		if j.GetLabels()["from"] != "schedule" || j.GetMaxAttempts() != handlers.DefaultMaxAttempts {
			t.Errorf("job %s has labels %v and max attempts %d, want the schedule's labels and the handler's attempts (%d)", j.GetId(), j.GetLabels(), j.GetMaxAttempts(), handlers.DefaultMaxAttempts)
		}
		nodes[2].RequireSucceeded(t, j.GetId(), nil)
	}
	if len(keys) != n {
		t.Fatalf("%d jobs have %d distinct idempotency keys, want one per tick", n, len(keys))
	}
}

// TestScheduleAPI: CreateSchedule, ListSchedules, PauseSchedule,
// ResumeSchedule and DeleteSchedule through gRPC (and ListSchedules over
// HTTP/JSON), with the config's schedules, on each store.
func TestScheduleAPI(t *testing.T) {
	for _, kind := range controlStores() {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			clk := jobstest.NewClock(time.Now().UTC().Truncate(time.Hour).Add(10 * time.Minute))
			reg, _ := countingRegistry(t)
			cfg := fastConfig(t)
			cfg.Schedules = map[string]config.Schedule{"from-config": {Type: "courier.demo.v1.Echo", Payload: []byte(`{"message":"cfg"}`), Every: config.Duration(24 * time.Hour)}}
			node := couriertest.StartConfig(t, cfg, courier.WithRegistry(reg), courier.WithStore(clockedStore(t, kind, "", "", clk.Now)), courier.WithClock(clk.Now))
			api := courierv1.NewJobServiceClient(node.Conn)
			create := func(s *courierv1.Schedule) (*courierv1.Schedule, error) {
				return api.CreateSchedule(ctx, &courierv1.CreateScheduleRequest{Schedule: s})
			}

			_, err := create(&courierv1.Schedule{Name: "bad", Payload: echoAny(t, "x"), Cron: "61 * * * *"})
			wantCode(t, "CreateSchedule with a bad cron", err, codes.InvalidArgument, "schedule.cron")
			_, err = create(&courierv1.Schedule{Name: "bad", Payload: echoAny(t, "x"), Cron: "* * * * *", TimeZone: "Mars/Base"})
			wantCode(t, "CreateSchedule with a bad zone", err, codes.InvalidArgument, "schedule.time_zone")
			_, err = create(&courierv1.Schedule{Name: "bad", Payload: echoAny(t, "x"), Every: durationpb.New(-time.Hour)})
			wantCode(t, "CreateSchedule with a negative interval", err, codes.InvalidArgument, "schedule.every")
			_, err = create(&courierv1.Schedule{Name: "bad", Payload: &anypb.Any{TypeUrl: "type.googleapis.com/courier.demo.v1.Nope"}, Every: durationpb.New(time.Hour)})
			wantCode(t, "CreateSchedule of an unknown type", err, codes.InvalidArgument, "schedule.payload")
			_, err = create(&courierv1.Schedule{Payload: echoAny(t, "x"), Every: durationpb.New(time.Hour)})
			wantCode(t, "CreateSchedule without a name", err, codes.InvalidArgument, "schedule.name")

			sc, err := create(&courierv1.Schedule{Name: "hourly", Payload: echoAny(t, "hi"), Every: durationpb.New(time.Hour), Missed: courierv1.MissedTicks_MISSED_TICKS_CATCH_UP})
			if err != nil {
				t.Fatal(err)
			}
			next := clk.Now().Truncate(time.Hour).Add(time.Hour)
			if !sc.GetNextTime().AsTime().Equal(next) || sc.GetMissed() != courierv1.MissedTicks_MISSED_TICKS_CATCH_UP || sc.GetPaused() || sc.GetFromConfig() {
				t.Fatalf("CreateSchedule = %v; want next_time %v, catch up", sc, next)
			}
			_, err = create(&courierv1.Schedule{Name: "hourly", Payload: echoAny(t, "hi"), Every: durationpb.New(time.Hour)})
			wantCode(t, "CreateSchedule of a taken name", err, codes.AlreadyExists, "hourly")

			list, err := api.ListSchedules(ctx, &courierv1.ListSchedulesRequest{})
			if err != nil || len(list.GetSchedules()) != 2 || list.GetSchedules()[0].GetName() != "from-config" || !list.GetSchedules()[0].GetFromConfig() {
				t.Fatalf("ListSchedules = %v, %v; want from-config (from the config) and hourly", list, err)
			}

			// Paused over its tick, then resumed: it goes on from the next
			// tick after now, and the one of the pause is not caught up.
			if p, err := api.PauseSchedule(ctx, &courierv1.PauseScheduleRequest{Name: "hourly"}); err != nil || !p.GetPaused() {
				t.Fatalf("PauseSchedule = %v, %v", p, err)
			}
			clk.Add(time.Hour)
			r, err := api.ResumeSchedule(ctx, &courierv1.ResumeScheduleRequest{Name: "hourly"})
			if err != nil || r.GetPaused() || !r.GetNextTime().AsTime().Equal(next.Add(time.Hour)) {
				t.Fatalf("ResumeSchedule = %v, %v; want next_time %v", r, err, next.Add(time.Hour))
			}
			clk.Add(time.Hour)
			var jobID string
			eventually(t, "the resumed schedule fired", func() (bool, error) {
				list, err := api.ListSchedules(ctx, &courierv1.ListSchedulesRequest{})
				if err != nil {
					return false, err
				}
				jobID = list.GetSchedules()[1].GetLastJobId()
				return jobID != "", nil
			})
			var res demov1.EchoResult
			node.RequireSucceeded(t, jobID, &res)
			if res.GetMessage() != "hi" {
				t.Fatalf("the scheduled job's result is %q, want hi", res.GetMessage())
			}
			jl, err := api.ListJobs(ctx, &courierv1.ListJobsRequest{Type: "courier.demo.v1.Echo"})
			if err != nil || len(jl.GetJobs()) != 1 {
				t.Fatalf("ListJobs = %d jobs, %v; want only the tick after the resume", len(jl.GetJobs()), err)
			}

			resp, err := http.Get("http://" + node.HTTPAddr() + "/v1/schedules")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"hourly"`) {
				t.Fatalf("GET /v1/schedules = %d %s", resp.StatusCode, body)
			}

			if _, err := api.DeleteSchedule(ctx, &courierv1.DeleteScheduleRequest{Name: "hourly"}); err != nil {
				t.Fatal(err)
			}
			_, err = api.DeleteSchedule(ctx, &courierv1.DeleteScheduleRequest{Name: "hourly"})
			wantCode(t, "DeleteSchedule again", err, codes.NotFound, "hourly")
			_, err = api.PauseSchedule(ctx, &courierv1.PauseScheduleRequest{Name: "hourly"})
			wantCode(t, "PauseSchedule of a deleted schedule", err, codes.NotFound, "hourly")
		})
	}
}

// TestPauseJobType: a paused type's queued job waits; resumed, it runs; on
// each store.
func TestPauseJobType(t *testing.T) {
	for _, kind := range controlStores() {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			reg, runs := countingRegistry(t)
			node := couriertest.StartConfig(t, fastConfig(t), courier.WithRegistry(reg), courier.WithStore(clockedStore(t, kind, "", "", nil)))
			api := courierv1.NewJobServiceClient(node.Conn)
			_, err := api.PauseJobType(ctx, &courierv1.PauseJobTypeRequest{Type: "courier.demo.v1.Nope"})
			wantCode(t, "PauseJobType of an unknown type", err, codes.InvalidArgument, "courier.demo.v1.Nope")
			p, err := api.PauseJobType(ctx, &courierv1.PauseJobTypeRequest{Type: "courier.demo.v1.Echo"})
			if err != nil || p.GetType() != "courier.demo.v1.Echo" || p.GetPauseTime() == nil {
				t.Fatalf("PauseJobType = %v, %v", p, err)
			}
			list, err := node.Jobs.PausedTypes(ctx) // the Go client
			if err != nil || len(list) != 1 || list[0].GetType() != "courier.demo.v1.Echo" {
				t.Fatalf("PausedTypes = %v, %v", list, err)
			}
			id := node.Enqueue(t, &demov1.Echo{Message: "waits"}, client.EnqueueOptions{})
			// The job is published (its outbox entry goes) and stays
			// QUEUED: no worker pulls its type. (A bounded observation: the
			// run would take milliseconds.)
			eventually(t, "the paused job published", func() (bool, error) {
				n, _, err := node.Store().OutboxStats(ctx)
				return n == 0, err
			})
			for range 20 {
				j, err := api.GetJob(ctx, &courierv1.GetJobRequest{Id: id})
				if err != nil || j.GetState() != courierv1.State_QUEUED || runs(id) != 0 {
					t.Fatalf("job of a paused type: %v, %v, %d runs; want QUEUED, not run", j.GetState(), err, runs(id))
				}
				time.Sleep(25 * time.Millisecond)
			}
			// The HTTP/JSON routes: list, and resume (type names hold dots).
			if code, body := httpDo(t, "GET", "http://"+node.HTTPAddr()+"/v1/pausedJobTypes"); code != 200 || !strings.Contains(body, `"type":"courier.demo.v1.Echo"`) {
				t.Fatalf("GET /v1/pausedJobTypes = %d %s", code, body)
			}
			if code, body := httpDo(t, "POST", "http://"+node.HTTPAddr()+"/v1/jobTypes/courier.demo.v1.Echo:resume"); code != 200 || !strings.Contains(body, `"resumed":true`) {
				t.Fatalf("POST /v1/jobTypes/courier.demo.v1.Echo:resume = %d %s", code, body)
			}
			node.RequireSucceeded(t, id, nil)
			if resumed, err := node.Jobs.ResumeType(ctx, "courier.demo.v1.Echo"); err != nil || resumed {
				t.Fatalf("ResumeType again = %v, %v; want resumed false", resumed, err)
			}
		})
	}
}

// TestSnoozeAndRetryAfter: a handler that snoozes for two hours runs again
// once the (test's) clock has passed them, with the same attempt number; one
// that asks to retry after two hours runs again as attempt 2. On each store.
func TestSnoozeAndRetryAfter(t *testing.T) {
	for _, kind := range controlStores() {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			clk := jobstest.NewClock(time.Now().UTC())
			var (
				mu   sync.Mutex
				seen = map[string]int{}
			)
			reg := handlers.NewRegistry()
			if err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
				mu.Lock()
				seen[job.ID]++
				first := seen[job.ID] == 1
				mu.Unlock()
				if first && job.Payload.GetMessage() == "snooze" {
					return nil, handlers.Snooze(2 * time.Hour)
				}
				if first && job.Payload.GetMessage() == "retry" {
					return nil, &handlers.DelayError{Delay: 2 * time.Hour, Err: errors.New("not yet")}
				}
				return &demov1.EchoResult{Message: fmt.Sprint(job.Attempt)}, nil
			}, handlers.Config{MaxAttempts: 3}); err != nil {
				t.Fatal(err)
			}
			node := couriertest.StartConfig(t, fastConfig(t), courier.WithRegistry(reg), courier.WithStore(clockedStore(t, kind, "", "", clk.Now)), courier.WithClock(clk.Now))
			api := courierv1.NewJobServiceClient(node.Conn)
			snoozed := node.Enqueue(t, &demov1.Echo{Message: "snooze"}, client.EnqueueOptions{})
			retried := node.Enqueue(t, &demov1.Echo{Message: "retry"}, client.EnqueueOptions{})
			for id, attempt := range map[string]int32{snoozed: 0, retried: 1} {
				eventually(t, "job "+id+" waits in the store", func() (bool, error) {
					j, err := api.GetJob(ctx, &courierv1.GetJobRequest{Id: id})
					if err != nil || j.GetRunAfter() == nil {
						return false, err
					}
					if j.GetState() != courierv1.State_QUEUED || j.GetAttempt() != attempt || !j.GetRunAfter().AsTime().After(clk.Now().Add(time.Hour)) {
						return false, fmt.Errorf("waiting job is %v; want QUEUED, attempt %d, run_after two hours on", j, attempt)
					}
					return true, nil
				})
			}
			clk.Add(2*time.Hour + time.Minute)
			for id, want := range map[string]string{snoozed: "1", retried: "2"} {
				var res demov1.EchoResult
				node.RequireSucceeded(t, id, &res)
				if res.GetMessage() != want {
					t.Errorf("job %s succeeded on attempt %s, want %s", id, res.GetMessage(), want)
				}
			}
		})
	}
}

// httpDo sends an HTTP request with an empty JSON body (for POST) and
// returns the status and body.
func httpDo(t *testing.T, method, url string) (int, string) {
	t.Helper()
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.ReplaceAll(string(b), " ", "")
}

// TestScheduleMissedTicks: after five hourly ticks pass with the clock
// stopped past them (the fleet was down), a catch-up schedule enqueues a job
// for each, and a skip schedule none, going on from the next tick; on each
// store.
func TestScheduleMissedTicks(t *testing.T) {
	for _, kind := range controlStores() {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			clk := jobstest.NewClock(time.Now().UTC().Truncate(time.Hour).Add(10 * time.Minute))
			reg, _ := countingRegistry(t)
			node := couriertest.StartConfig(t, fastConfig(t), courier.WithRegistry(reg), courier.WithStore(clockedStore(t, kind, "", "", clk.Now)), courier.WithClock(clk.Now))
			api := courierv1.NewJobServiceClient(node.Conn)
			// Through the Go client.
			for name, catchUp := range map[string]bool{"catch": true, "skip": false} {
				if _, err := node.Jobs.CreateSchedule(ctx, name, &demov1.Echo{Message: name},
					client.ScheduleOptions{Every: time.Hour, CatchUp: catchUp, Labels: map[string]string{"s": name}}); err != nil {
					t.Fatal(err)
				}
			}
			first := clk.Now().Truncate(time.Hour).Add(time.Hour)
			clk.Add(5*time.Hour + 10*time.Minute) // ticks first..first+4h are 10 min or more late: missed
			eventually(t, "both schedules moved past the missed ticks", func() (bool, error) {
				list, err := api.ListSchedules(ctx, &courierv1.ListSchedulesRequest{})
				if err != nil {
					return false, err
				}
				for _, s := range list.GetSchedules() {
					if !s.GetNextTime().AsTime().Equal(first.Add(5 * time.Hour)) {
						return false, nil
					}
				}
				return true, nil
			})
			for name, want := range map[string]int{"catch": 5, "skip": 0} {
				jl, err := api.ListJobs(ctx, &courierv1.ListJobsRequest{Labels: map[string]string{"s": name}, PageSize: 100})
				if err != nil || len(jl.GetJobs()) != want {
					t.Fatalf("schedule %s enqueued %d jobs (%v); want %d", name, len(jl.GetJobs()), err, want)
				}
			}
		})
	}
}

// TestDashboardControls: the Node's dashboard lists schedules and pauses
// and resumes a job type through the gRPC API.
func TestDashboardControls(t *testing.T) {
	ctx := context.Background()
	reg, _ := countingRegistry(t)
	node := couriertest.StartConfig(t, fastConfig(t), courier.WithRegistry(reg))
	if _, err := node.Jobs.CreateSchedule(ctx, "nightly", &demov1.Echo{Message: "hi"}, client.ScheduleOptions{Cron: "0 2 * * *", TimeZone: "Europe/Paris"}); err != nil {
		t.Fatal(err)
	}
	base := "http://" + node.HTTPAddr()
	if code, body := httpDo(t, "GET", base+"/schedules"); code != 200 || !strings.Contains(body, `data-schedule="nightly"`) || !strings.Contains(body, "02***(Europe/Paris)") { // (httpDo drops spaces)
		t.Fatalf("GET /schedules = %d %s", code, body)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Post(base+"/types/courier.demo.v1.Echo/pause", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("dashboard pause: %d", resp.StatusCode)
	}
	if list, err := node.Jobs.PausedTypes(ctx); err != nil || len(list) != 1 {
		t.Fatalf("paused types after the dashboard's pause: %v, %v", list, err)
	}
	if code, body := httpDo(t, "GET", base+"/"); code != 200 || !strings.Contains(body, `action="/types/courier.demo.v1.Echo/resume"`) {
		t.Fatalf("overview with Echo paused = %d %s", code, body)
	}
	if resp, err = noRedirect.Post(base+"/types/courier.demo.v1.Echo/resume", "application/x-www-form-urlencoded", nil); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if list, err := node.Jobs.PausedTypes(ctx); err != nil || len(list) != 0 {
		t.Fatalf("paused types after the dashboard's resume: %v, %v", list, err)
	}
}

// TestScheduleRefusesWhatEnqueueRefuses: a schedule of a workflow type on
// a Node without Temporal is refused when created (API) or started
// (config), not at each tick.
func TestScheduleRefusesWhatEnqueueRefuses(t *testing.T) {
	ctx := context.Background()
	cfg := fastConfig(t)
	cfg.Handlers.Demo = true
	node := couriertest.StartConfig(t, cfg)
	_, err := node.Jobs.CreateSchedule(ctx, "bisect", &demov1.Bisect{}, client.ScheduleOptions{Every: time.Hour})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("CreateSchedule of a workflow type without Temporal: %v, want FailedPrecondition", err)
	}
	cfg.Schedules = map[string]config.Schedule{"bisect": {Type: "courier.demo.v1.Bisect", Every: config.Duration(time.Hour)}}
	n, err := courier.New(cfg)
	if err == nil {
		err = n.Run(ctx)
	}
	var ve *config.ValidationError
	if !errors.As(err, &ve) || ve.Field != "schedules.bisect.type" {
		t.Fatalf("a config schedule of a workflow type without Temporal: %v; want a config error of schedules.bisect.type", err)
	}
}

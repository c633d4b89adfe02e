package courier_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/courierq/courier"
	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/client/pgtx"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/couriertest"
	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/internal/testenv"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// orderLog records the runs of Echo jobs whose message is "KEY/INDEX/MODE"
// (MODE: ok, fail-once: a retryable error on attempt 1, fail-always: a
// retryable error, fail: a permanent error, block: until its context
// ends), and any two runs of one key that overlapped.
type orderLog struct {
	mu       sync.Mutex
	healed   bool                // mode fail-until-healed succeeds once set
	gate     chan struct{}       // mode gate waits for it to close
	runs     map[string][]string // key → "INDEX#ATTEMPT", in start order
	inflight map[string]int
	overlaps []string
}

func (l *orderLog) registry(t *testing.T) *handlers.Registry {
	reg := handlers.NewRegistry()
	err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		parts := strings.Split(job.Payload.GetMessage(), "/")
		key, idx, mode := parts[0], parts[1], parts[2]
		l.mu.Lock()
		l.runs[key] = append(l.runs[key], idx+"#"+strconv.Itoa(job.Attempt))
		if l.inflight[key]++; l.inflight[key] > 1 {
			l.overlaps = append(l.overlaps, key+"/"+idx)
		}
		l.mu.Unlock()
		// Some work, so that runs of one key would overlap if they could.
		time.Sleep(5 * time.Millisecond)
		l.mu.Lock()
		l.inflight[key]--
		l.mu.Unlock()
		switch {
		case mode == "gate":
			select {
			case <-l.gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case mode == "block":
			<-ctx.Done()
			return nil, ctx.Err()
		case mode == "fail-always":
			return nil, errors.New("transient failure")
		case mode == "fail-once" && job.Attempt == 1:
			return nil, errors.New("transient failure")
		case mode == "fail":
			return nil, handlers.Permanent(errors.New("permanent failure"))
		case mode == "fail-until-healed":
			l.mu.Lock()
			healed := l.healed
			l.mu.Unlock()
			if !healed {
				return nil, handlers.Permanent(errors.New("broken until healed"))
			}
		}
		return &demov1.EchoResult{Message: job.Payload.GetMessage()}, nil
	}, handlers.Config{MaxAttempts: 3, MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// controlNodes starts the Nodes of a store kind on one in-process
// emulator: one on SQLite (which one process owns), two replicas sharing a
// PostgreSQL schema.
func controlNodes(t *testing.T, kind testenv.StoreKind, reg *handlers.Registry, roles ...string) []*couriertest.Node {
	t.Helper()
	emu, err := emulator.Start(context.Background(), emulator.Config{InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	cfg := couriertest.Config(t.TempDir())
	cfg.PubSub = config.PubSub{Project: "controls"}
	replicas := 1
	if kind == testenv.Postgres {
		url, schema := testenv.PostgresSchema(t)
		cfg.Store = config.Store{Driver: "postgres", URL: url, Schema: schema}
		replicas = 2
	} else {
		cfg.Store.Path = filepath.Join(t.TempDir(), "jobs.db")
	}
	var nodes []*couriertest.Node
	if len(roles) > 0 {
		replicas = len(roles)
	}
	for i := range replicas {
		if len(roles) > 0 {
			cfg.Role = roles[i]
		}
		c, err := pubsub.NewClient(context.Background(), "controls", emu.ClientOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		nodes = append(nodes, couriertest.StartConfig(t, cfg, courier.WithRegistry(reg), courier.WithPubSubClient(c)))
	}
	return nodes
}

// TestOrderingKeys: jobs of one ordering key, enqueued through every
// replica in turn, run one at a time in enqueue order across the replicas.
// A job that fails and is retried holds the rest of its key until its
// retry has run (Pub/Sub redelivers it before anything after it); a job
// that fails for good (dead-lettered and acked) lets the rest go on.
func TestOrderingKeys(t *testing.T) {
	for _, kind := range testenv.StoreKinds() {
		t.Run(string(kind), func(t *testing.T) {
			l := &orderLog{runs: map[string][]string{}, inflight: map[string]int{}}
			nodes := controlNodes(t, kind, l.registry(t))
			ctx, cancel := context.WithTimeout(context.Background(), couriertest.Timeout)
			defer cancel()
			const perKey = 8
			modes := map[string]string{"a/3": "fail-once", "b/2": "fail"}
			type enq struct{ key, id string }
			var ids []enq
			for i := range perKey {
				for _, key := range []string{"a", "b", "c"} {
					msg := fmt.Sprintf("%s/%d", key, i)
					mode := modes[msg]
					if mode == "" {
						mode = "ok"
					}
					n := nodes[len(ids)%len(nodes)]
					id, err := n.Jobs.Enqueue(ctx, &demov1.Echo{Message: msg + "/" + mode}, client.EnqueueOptions{OrderingKey: key})
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, enq{key, id})
				}
			}
			for _, e := range ids {
				j, err := nodes[0].Jobs.Wait(ctx, e.id, nil)
				var je *client.JobError
				if err != nil && !errors.As(err, &je) {
					t.Fatalf("waiting for %s: %v", e.id, err)
				}
				if j.OrderingKey != e.key {
					t.Fatalf("job %s: ordering key %q, want %q", e.id, j.OrderingKey, e.key)
				}
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if len(l.overlaps) > 0 {
				t.Errorf("runs of one key overlapped: %v", l.overlaps)
			}
			want := map[string][]string{}
			for _, key := range []string{"a", "b", "c"} {
				for i := range perKey {
					want[key] = append(want[key], fmt.Sprintf("%d#1", i))
					if key == "a" && i == 3 {
						want[key] = append(want[key], "3#2")
					}
				}
			}
			for key, w := range want {
				if !slices.Equal(l.runs[key], w) {
					t.Errorf("key %s ran %v, want %v", key, l.runs[key], w)
				}
			}
			j, err := nodes[0].Jobs.Get(ctx, ids[2*3+1].id) // b/2
			if err != nil || j.State != courierv1.State_FAILED {
				t.Fatalf("b/2: %v %v", j, err)
			}
		})
	}
}

// TestEnqueueJobsRun: a batch enqueued through EnqueueJobs runs, on each
// store.
func TestEnqueueJobsRun(t *testing.T) {
	for _, kind := range testenv.StoreKinds() {
		t.Run(string(kind), func(t *testing.T) {
			l := &orderLog{runs: map[string][]string{}, inflight: map[string]int{}}
			nodes := controlNodes(t, kind, l.registry(t))
			ctx, cancel := context.WithTimeout(context.Background(), couriertest.Timeout)
			defer cancel()
			var batch []client.BatchJob
			for i := range 50 {
				batch = append(batch, client.BatchJob{Payload: &demov1.Echo{Message: fmt.Sprintf("k%d/%d/ok", i%5, i)}})
			}
			ids, err := nodes[len(nodes)-1].Jobs.EnqueueBatch(ctx, batch)
			if err != nil || len(ids) != len(batch) {
				t.Fatalf("EnqueueBatch: %d IDs, %v", len(ids), err)
			}
			for i, id := range ids {
				var res demov1.EchoResult
				if _, err := nodes[0].Jobs.Wait(ctx, id, &res); err != nil || res.Message != batch[i].Payload.(*demov1.Echo).Message {
					t.Fatalf("job %d (%s): %v %v", i, id, &res, err)
				}
			}
		})
	}
}

// TestPerJobOverridesRun: a job's own max_attempts and timeout are the
// ones its runs get, below the type's (3 attempts, an hour).
func TestPerJobOverridesRun(t *testing.T) {
	for _, kind := range testenv.StoreKinds() {
		t.Run(string(kind), func(t *testing.T) {
			l := &orderLog{runs: map[string][]string{}, inflight: map[string]int{}}
			reg := l.registry(t)
			if err := reg.Configure("courier.demo.v1.Echo", handlers.Config{Timeout: time.Hour}); err != nil {
				t.Fatal(err)
			}
			nodes := controlNodes(t, kind, reg)
			ctx, cancel := context.WithTimeout(context.Background(), couriertest.Timeout)
			defer cancel()
			jc := nodes[0].Jobs
			blocked, err := jc.Enqueue(ctx, &demov1.Echo{Message: "t/0/block"}, client.EnqueueOptions{MaxAttempts: 1, Timeout: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			retried, err := jc.Enqueue(ctx, &demov1.Echo{Message: "r/0/fail-always"}, client.EnqueueOptions{MaxAttempts: 2})
			if err != nil {
				t.Fatal(err)
			}
			j, err := jc.Wait(ctx, blocked, nil)
			if j.GetState() != courierv1.State_FAILED || j.GetAttempt() != 1 || !strings.Contains(j.GetError().GetMessage(), "timed out after 50ms") {
				t.Fatalf("blocked job with a 50ms timeout and 1 attempt: %v (%v)", j, err)
			}
			j, err = jc.Wait(ctx, retried, nil)
			if j.GetState() != courierv1.State_FAILED || j.GetAttempt() != 2 || j.GetMaxAttempts() != 2 {
				t.Fatalf("failing job with 2 attempts: %v (%v)", j, err)
			}
			// Above the type's: refused, naming the field.
			_, err = jc.Enqueue(ctx, &demov1.Echo{Message: "x/0/ok"}, client.EnqueueOptions{Timeout: 2 * time.Hour})
			if err == nil || !strings.Contains(err.Error(), "timeout is 2h0m0s") {
				t.Fatalf("timeout above the type's: %v", err)
			}
		})
	}
}

// TestEnqueueTxRuns: a job enqueued in the application's own transaction
// (client/pgtx on jobs/postgres.EnqueueTx) runs once the transaction
// commits, and does not exist when it rolls back.
func TestEnqueueTxRuns(t *testing.T) {
	l := &orderLog{runs: map[string][]string{}, inflight: map[string]int{}}
	nodes := controlNodes(t, testenv.Postgres, l.registry(t))
	ctx, cancel := context.WithTimeout(context.Background(), couriertest.Timeout)
	defer cancel()
	cfg := nodes[0].Config()
	pool, err := pgxpool.New(ctx, cfg.Store.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gone, _, err := pgtx.Enqueue(ctx, tx, cfg.Store.Schema, &demov1.Echo{Message: "tx/0/ok"}, client.EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Jobs.Get(ctx, gone); status.Code(err) != codes.NotFound {
		t.Fatalf("GetJob of a rolled back job: %v, want NotFound", err)
	}

	var id string
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		id, _, err = pgtx.Enqueue(ctx, tx, cfg.Store.Schema, &demov1.Echo{Message: "tx/1/ok"}, client.EnqueueOptions{IdempotencyKey: "order-1"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var res demov1.EchoResult
	if _, err := nodes[1].Jobs.Wait(ctx, id, &res); err != nil || res.Message != "tx/1/ok" {
		t.Fatalf("the committed job: %v %v", &res, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Equal(l.runs["tx"], []string{"1#1"}) {
		t.Fatalf("runs: %v, want only the committed job, once", l.runs["tx"])
	}
}

// TestDeadLetters: dead letters listed and replayed through the gRPC API of
// a replica that runs no worker (the API role, beside a worker replica on
// PostgreSQL; one Node on SQLite).
func TestDeadLetters(t *testing.T) {
	for _, kind := range testenv.StoreKinds() {
		t.Run(string(kind), func(t *testing.T) {
			l := &orderLog{runs: map[string][]string{}, inflight: map[string]int{}}
			var roles []string
			if kind == testenv.Postgres {
				roles = []string{"api", "worker"}
			}
			api := controlNodes(t, kind, l.registry(t), roles...)[0]
			ctx, cancel := context.WithTimeout(context.Background(), couriertest.Timeout)
			defer cancel()
			svc := api.Jobs.Service()
			var dead []string
			for i := range 2 {
				id, err := api.Jobs.Enqueue(ctx, &demov1.Echo{Message: fmt.Sprintf("dl/%d/fail-until-healed", i)}, client.EnqueueOptions{Labels: map[string]string{"team": "x"}})
				if err != nil {
					t.Fatal(err)
				}
				if j, _ := api.Jobs.Wait(ctx, id, nil); j.GetState() != courierv1.State_FAILED {
					t.Fatalf("job %s: %v, want FAILED", id, j)
				}
				dead = append(dead, id)
			}
			// A peek is best effort: ask until both show.
			var letters []*courierv1.DeadLetter
			for len(letters) < 2 {
				resp, err := svc.ListDeadLetters(ctx, &courierv1.ListDeadLettersRequest{Type: "courier.demo.v1.Echo"})
				if err != nil {
					t.Fatal(err)
				}
				letters = resp.DeadLetters
				if ctx.Err() != nil {
					t.Fatalf("ListDeadLetters shows %d dead letters, want 2", len(letters))
				}
			}
			for _, dl := range letters {
				var echo demov1.Echo
				if !slices.Contains(dead, dl.JobId) || dl.Type != "courier.demo.v1.Echo" || dl.Reason == "" || dl.Labels["team"] != "x" ||
					dl.Payload.UnmarshalTo(&echo) != nil || !strings.HasPrefix(echo.Message, "dl/") || dl.Subscription == "" || dl.MessageId == "" {
					t.Fatalf("dead letter: %v", dl)
				}
			}
			for _, c := range []struct {
				req  *courierv1.ListDeadLettersRequest
				want string
			}{
				{&courierv1.ListDeadLettersRequest{PageSize: -1}, "page_size is -1"},
				{&courierv1.ListDeadLettersRequest{PageSize: 1001}, "page_size is 1001"},
				{&courierv1.ListDeadLettersRequest{Type: "no.such.Type"}, "not a registered job type"},
			} {
				if _, err := svc.ListDeadLetters(ctx, c.req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("ListDeadLetters(%v): %v, want InvalidArgument naming %q", c.req, err, c.want)
				}
			}
			for _, c := range []struct {
				req  *courierv1.ReplayDeadLettersRequest
				want string
			}{
				{&courierv1.ReplayDeadLettersRequest{}, "both empty"},
				{&courierv1.ReplayDeadLettersRequest{Type: "courier.demo.v1.Echo", DeadLetters: []*courierv1.DeadLetterRef{{Subscription: "s", MessageId: "m"}}}, "not both"},
				{&courierv1.ReplayDeadLettersRequest{DeadLetters: []*courierv1.DeadLetterRef{{Subscription: "s"}}}, "dead_letters[0]"},
			} {
				if _, err := svc.ReplayDeadLetters(ctx, c.req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("ReplayDeadLetters(%v): %v, want InvalidArgument naming %q", c.req, err, c.want)
				}
			}

			l.mu.Lock()
			l.healed = true
			l.mu.Unlock()
			first := &courierv1.DeadLetterRef{Subscription: letters[0].Subscription, MessageId: letters[0].MessageId}
			resp, err := svc.ReplayDeadLetters(ctx, &courierv1.ReplayDeadLettersRequest{DeadLetters: []*courierv1.DeadLetterRef{first}})
			if err != nil || len(resp.Results) != 1 || resp.Results[0].JobId == "" || resp.Results[0].Error != nil {
				t.Fatalf("ReplayDeadLetters: %v %v", resp, err)
			}
			replayed := resp.Results[0].JobId
			j, err := api.Jobs.Wait(ctx, replayed, nil)
			if err != nil || j.Labels[jobservice.ReenqueueLabel] != letters[0].JobId || j.Labels["team"] != "x" {
				t.Fatalf("replayed job: %v %v", j, err)
			}
			// Gone from the subscription: replaying it again says so.
			resp, err = svc.ReplayDeadLetters(ctx, &courierv1.ReplayDeadLettersRequest{DeadLetters: []*courierv1.DeadLetterRef{first}})
			if err != nil || len(resp.Results) != 1 || resp.Results[0].GetError().GetCode() != int32(codes.NotFound) {
				t.Fatalf("second replay of one dead letter: %v %v", resp, err)
			}
			// A replay of the same dead job from elsewhere (the dashboard)
			// makes no second job.
			again, err := svc.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{Payload: letters[0].Payload, IdempotencyKey: jobservice.ReenqueueKey(letters[0].JobId)})
			if err != nil || !again.Duplicate || again.JobId != replayed {
				t.Fatalf("re-enqueue of a replayed dead job: %v %v", again, err)
			}
			// The rest of the type.
			resp, err = svc.ReplayDeadLetters(ctx, &courierv1.ReplayDeadLettersRequest{Type: "courier.demo.v1.Echo"})
			if err != nil || len(resp.Results) != 1 || resp.Results[0].MessageId != letters[1].MessageId || resp.Results[0].Error != nil {
				t.Fatalf("ReplayDeadLetters of the type: %v %v", resp, err)
			}
			if _, err := api.Jobs.Wait(ctx, resp.Results[0].JobId, nil); err != nil {
				t.Fatal(err)
			}
			list, err := svc.ListDeadLetters(ctx, &courierv1.ListDeadLettersRequest{})
			if err != nil || len(list.DeadLetters) != 0 {
				t.Fatalf("dead letters after replaying all: %v %v", list, err)
			}
		})
	}
}

// TestControlsOverHTTP: the new RPCs' HTTP/JSON routes (from their
// google.api.http options).
func TestControlsOverHTTP(t *testing.T) {
	l := &orderLog{runs: map[string][]string{}, inflight: map[string]int{}}
	n := controlNodes(t, testenv.SQLite, l.registry(t))[0]
	base := "http://" + n.HTTPAddr()
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
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
		return resp.StatusCode, string(b)
	}
	job := func(msg, extra string) string {
		return `{"payload": {"@type": "type.googleapis.com/courier.demo.v1.Echo", "message": "` + msg + `"}` + extra + `}`
	}
	code, body := call("POST", "/v1/jobs:batchEnqueue", `{"jobs": [`+job("h/0/ok", `, "orderingKey": "h"`)+`, `+job("h/1/ok", `, "maxAttempts": 2, "timeout": "30s"`)+`]}`)
	var resp courierv1.EnqueueJobsResponse
	if code != http.StatusOK || protojson.Unmarshal([]byte(body), &resp) != nil || len(resp.Jobs) != 2 {
		t.Fatalf("POST /v1/jobs:batchEnqueue: %d %s", code, body)
	}
	code, body = call("POST", "/v1/jobs:batchEnqueue", `{"jobs": [`+job("h/2/ok", "")+`, `+job("h/3/ok", `, "uniqueFor": "-5s", "idempotencyKey": "k"`)+`]}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "jobs[1]") || !strings.Contains(body, "unique_for") {
		t.Fatalf("POST /v1/jobs:batchEnqueue with a bad job: %d %s", code, body)
	}
	code, body = call("GET", "/v1/deadLetters?type=courier.demo.v1.Echo&pageSize=10", "")
	if code != http.StatusOK || !strings.Contains(body, `"deadLetters"`) {
		t.Fatalf("GET /v1/deadLetters: %d %s", code, body)
	}
	code, body = call("GET", "/v1/deadLetters?pageSize=-1", "")
	if code != http.StatusBadRequest || !strings.Contains(body, "page_size") {
		t.Fatalf("GET /v1/deadLetters?pageSize=-1: %d %s", code, body)
	}
	code, body = call("POST", "/v1/deadLetters:replay", `{"type": "courier.demo.v1.Echo"}`)
	if code != http.StatusOK || !strings.Contains(body, `"results"`) {
		t.Fatalf("POST /v1/deadLetters:replay: %d %s", code, body)
	}
	code, body = call("POST", "/v1/deadLetters:replay", `{}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "dead_letters") {
		t.Fatalf("POST /v1/deadLetters:replay {}: %d %s", code, body)
	}
	for _, r := range resp.Jobs {
		if _, err := n.Jobs.Wait(context.Background(), r.JobId, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOrderingKeyCancel: a job of a key cancelled while it waits behind the
// key's running job (its message already in Pub/Sub) is skipped, and the
// key goes on.
func TestOrderingKeyCancel(t *testing.T) {
	for _, kind := range testenv.StoreKinds() {
		t.Run(string(kind), func(t *testing.T) {
			l := &orderLog{runs: map[string][]string{}, inflight: map[string]int{}, gate: make(chan struct{})}
			nodes := controlNodes(t, kind, l.registry(t))
			ctx, cancel := context.WithTimeout(context.Background(), couriertest.Timeout)
			defer cancel()
			var ids []string
			for i, mode := range []string{"gate", "ok", "ok"} {
				id, err := nodes[i%len(nodes)].Jobs.Enqueue(ctx, &demov1.Echo{Message: fmt.Sprintf("d/%d/%s", i, mode)}, client.EnqueueOptions{OrderingKey: "d"})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			// Once the outbox is empty, every message is in Pub/Sub: d/1
			// and d/2 wait there behind d/0, which holds the gate.
			for {
				n, _, err := nodes[0].Store().OutboxStats(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("the outbox still holds %d entries", n)
				case <-time.After(10 * time.Millisecond):
				}
			}
			if j, err := nodes[0].Jobs.Cancel(ctx, ids[1]); err != nil || j.State != courierv1.State_CANCELLED {
				t.Fatalf("cancel d/1: %v %v", j, err)
			}
			close(l.gate)
			for i, want := range []courierv1.State{courierv1.State_SUCCEEDED, courierv1.State_CANCELLED, courierv1.State_SUCCEEDED} {
				j, _ := nodes[0].Jobs.Wait(ctx, ids[i], nil)
				if j.GetState() != want {
					t.Fatalf("d/%d: %v, want %v", i, j, want)
				}
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if !slices.Equal(l.runs["d"], []string{"0#1", "2#1"}) {
				t.Fatalf("key d ran %v, want d/0 then d/2", l.runs["d"])
			}
		})
	}
}

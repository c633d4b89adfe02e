package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/internal/testenv"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	hellov1 "github.com/courierq/courier/proto/hello/v1"
)

// securedStack runs courierd with TLS and mTLS on both ports, bearer
// tokens, proxy headers from loopback, and a JobService policy like the
// probe service's of the gRPC matrix in backend/backend_test.go: readers
// and writers get, watch and list, writers enqueue, admins cancel.
func securedStack(t *testing.T) (*courier.Node, *testenv.PKI) {
	t.Helper()
	p := testenv.NewPKI(t)
	tokens := testenv.TokenFile(t, map[string][2]string{
		"reader-token": {"svc-reader", "reader"},
		"writer-token": {"svc-writer", "writer"},
		"admin-token":  {"svc-admin", "admin"},
		"norole-token": {"svc-norole", ""},
	})
	st := startCourierdDoc(t, fmt.Sprintf(`grpc:
  addr: 127.0.0.1:0
  tls: {certFile: %[1]s, keyFile: %[2]s, clientCAFile: %[3]s}
  auth:
    tokensFile: %[4]s
    mtlsRoles: {"spiffe://courier/reader": [reader], "spiffe://courier/admin": [admin]}
    proxyHeaders: true
    trustedProxies: [127.0.0.0/8]
  policies:
    courier.v1.JobService:
      roles: [reader, writer]
      methods:
        EnqueueJob: {roles: [writer]}
        CancelJob: {roles: [admin]}
http:
  addr: 127.0.0.1:0
  tls: {certFile: %[1]s, keyFile: %[2]s}
pubsub: {emulator: embedded}
store: {path: %[5]s}
handlers:
  demo: true
  types:
    courier.demo.v1.Sleep: {maxAttempts: 5, minBackoff: 0s, maxBackoff: 1s}
`, p.ServerCert, p.ServerKey, p.CAFile, tokens, filepath.Join(t.TempDir(), "jobs.db")))
	return st, p
}

// api is an HTTP/JSON caller: an HTTPS client and the headers it sends.
type api struct {
	t      *testing.T
	base   string
	client *http.Client
	header http.Header
}

func newAPI(t *testing.T, st *courier.Node, p *testenv.PKI, cfg client.Config, header http.Header) *api {
	return &api{t: t, base: "https://" + st.HTTPAddr(), client: testenv.HTTPClient(t, cfg), header: header}
}

func withBearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// do sends a request and decodes a JSON answer into out (a success) or a
// google.rpc.Status (an error, returned with its HTTP status).
func (a *api) do(method, path, body string, out any) (int, *apiStatus) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	for k, v := range a.header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		a.t.Fatalf("%s %s: %d with Content-Type %q: %s", method, path, resp.StatusCode, ct, data)
	}
	if resp.StatusCode != http.StatusOK {
		var s apiStatus
		if err := json.Unmarshal(data, &s); err != nil || s.Code == 0 {
			a.t.Fatalf("%s %s: %d with a body that is not a google.rpc.Status: %s", method, path, resp.StatusCode, data)
		}
		if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			a.t.Errorf("%s %s: 401 without a Bearer challenge", method, path)
		}
		return resp.StatusCode, &s
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return resp.StatusCode, nil
}

// apiStatus is a google.rpc.Status as JSON.
type apiStatus struct {
	Code    codes.Code        `json:"code"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

// apiJob is the part of a Job (as protojson) that the tests read.
type apiJob struct {
	ID       string            `json:"id"`
	Type     string            `json:"type"`
	State    string            `json:"state"`
	Labels   map[string]string `json:"labels"`
	Result   map[string]any    `json:"result"`
	Progress *struct {
		Fraction float64 `json:"fraction"`
	} `json:"progress"`
}

// code is the outcome of an HTTP call as a gRPC code, checked against its
// HTTP status.
func (a *api) code(method, path, body string) codes.Code {
	a.t.Helper()
	httpStatus, s := a.do(method, path, body, nil)
	if s == nil {
		return codes.OK
	}
	want := map[codes.Code]int{codes.Unauthenticated: 401, codes.PermissionDenied: 403, codes.NotFound: 404,
		codes.InvalidArgument: 400, codes.FailedPrecondition: 400, codes.Unavailable: 503}[s.Code]
	if want != 0 && httpStatus != want {
		a.t.Errorf("%s %s: %v answered with HTTP %d, want %d", method, path, s.Code, httpStatus, want)
	}
	return s.Code
}

// enqueue posts an EnqueueJobRequest and returns the job ID.
func (a *api) enqueue(body string) string {
	a.t.Helper()
	var out struct {
		JobID     string `json:"jobId"`
		Duplicate bool   `json:"duplicate"`
	}
	if code, s := a.do("POST", "/v1/jobs", body, &out); s != nil || out.JobID == "" {
		a.t.Fatalf("POST /v1/jobs %s: %d %+v", body, code, s)
	}
	return out.JobID
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// watch opens GET /v1/jobs/ID:watch and returns its events as they come;
// the channel closes when the stream ends. A non-200 answer is returned as
// the status instead.
func (a *api) watch(ctx context.Context, id string) (<-chan sseEvent, int, *apiStatus) {
	a.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", a.base+"/v1/jobs/"+id+":watch", nil)
	for k, v := range a.header {
		req.Header[k] = v
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var s apiStatus
		data, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(data, &s); err != nil {
			a.t.Fatalf("watch %s: %d %s", id, resp.StatusCode, data)
		}
		return nil, resp.StatusCode, &s
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		a.t.Fatalf("watch %s: Content-Type %q", id, ct)
	}
	events := make(chan sseEvent, 100)
	go func() {
		defer close(events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return events, http.StatusOK, nil
}

// watchCode drains a watch and returns its outcome: OK when it ended after
// a terminal job event, the error event's code, or the answer's.
func (a *api) watchCode(id string) codes.Code {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events, _, s := a.watch(ctx, id)
	if s != nil {
		return s.Code
	}
	var last sseEvent
	for ev := range events {
		last = ev
	}
	if last.name == "error" {
		var s apiStatus
		json.Unmarshal([]byte(last.data), &s)
		return s.Code
	}
	var j apiJob
	if err := json.Unmarshal([]byte(last.data), &j); err != nil || !terminalState(j.State) {
		a.t.Fatalf("watch %s ended after %+v", id, last)
	}
	return codes.OK
}

func terminalState(s string) bool { return s == "SUCCEEDED" || s == "FAILED" || s == "CANCELLED" }

// TestHTTPJSONAuthorizationMatrix: every caller of the gRPC matrix
// (backend/backend_test.go) gets the same outcome over HTTP/JSON as over
// gRPC, method by method, against the same server: GetJob, WatchJob (a
// stream) and CancelJob in the roles of the matrix's Ping, Watch and Admin.
// CancelJob of a finished job is FailedPrecondition once authorized.
func TestHTTPJSONAuthorizationMatrix(t *testing.T) {
	st, p := securedStack(t)
	writer := newAPI(t, st, p, client.Config{CAFile: p.CAFile}, withBearer("writer-token"))
	id := writer.enqueue(`{"payload": {"@type": "type.googleapis.com/courier.demo.v1.Echo", "message": "m"}}`)
	if writer.watchCode(id) != codes.OK {
		t.Fatal("the job did not finish")
	}

	tlsOnly := client.Config{CAFile: p.CAFile}
	withToken := func(tok string) client.Config { c := tlsOnly; c.Token = tok; return c }
	const denied, unauth, ok, done = codes.PermissionDenied, codes.Unauthenticated, codes.OK, codes.FailedPrecondition
	callers := []struct {
		name   string
		cfg    client.Config
		header metadata.MD
		want   [3]codes.Code // GetJob, WatchJob, CancelJob
	}{
		{"none", tlsOnly, nil, [3]codes.Code{unauth, unauth, unauth}},
		{"token reader", withToken("reader-token"), nil, [3]codes.Code{ok, ok, denied}},
		{"token admin", withToken("admin-token"), nil, [3]codes.Code{denied, denied, done}},
		{"token without roles", withToken("norole-token"), nil, [3]codes.Code{denied, denied, denied}},
		{"token unknown", withToken("stolen-token"), nil, [3]codes.Code{unauth, unauth, unauth}},
		{"token malformed", tlsOnly, metadata.Pairs("authorization", "Basic abc"), [3]codes.Code{unauth, unauth, unauth}},
		{"mtls reader", p.Client(t, "reader", "spiffe://courier/reader", false, false), nil, [3]codes.Code{ok, ok, denied}},
		{"mtls admin", p.Client(t, "admin", "spiffe://courier/admin", false, false), nil, [3]codes.Code{denied, denied, done}},
		{"mtls unmapped", p.Client(t, "stranger", "spiffe://courier/stranger", false, false), nil, [3]codes.Code{denied, denied, denied}},
		{"mtls rogue CA", p.Client(t, "rogue", "spiffe://courier/admin", true, false), nil, [3]codes.Code{unauth, unauth, unauth}},
		{"mtls not for client auth", p.Client(t, "server-only", "spiffe://courier/admin", false, true), nil, [3]codes.Code{unauth, unauth, unauth}},
		{"proxy reader", tlsOnly, metadata.Pairs("x-webauth-user", "alice", "x-webauth-roles", "viewer, reader"), [3]codes.Code{ok, ok, denied}},
		{"proxy admin", tlsOnly, metadata.Pairs("x-webauth-user", "bob", "x-webauth-roles", "admin"), [3]codes.Code{denied, denied, done}},
		{"proxy empty user", tlsOnly, metadata.Pairs("x-webauth-user", " "), [3]codes.Code{unauth, unauth, unauth}},
	}
	for _, c := range callers {
		t.Run(c.name, func(t *testing.T) {
			// gRPC
			conn, err := client.Dial(st.GRPCAddr(), c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if c.header != nil {
				ctx = metadata.NewOutgoingContext(ctx, c.header)
			}
			jc := courierv1.NewJobServiceClient(conn)
			var grpcGot [3]codes.Code
			_, err = jc.GetJob(ctx, &courierv1.GetJobRequest{Id: id})
			grpcGot[0] = status.Code(err)
			grpcGot[1] = grpcWatchCode(ctx, jc, id)
			_, err = jc.CancelJob(ctx, &courierv1.CancelJobRequest{Id: id})
			grpcGot[2] = status.Code(err)
			_, err = hellov1.NewHelloClient(conn).SayHello(ctx, &hellov1.SayHelloRequest{Name: "x"})
			grpcHello := status.Code(err)

			// HTTP/JSON
			header := http.Header{}
			if c.cfg.Token != "" {
				header.Set("Authorization", "Bearer "+c.cfg.Token)
			}
			for k, vs := range c.header {
				for _, v := range vs {
					header.Add(k, v)
				}
			}
			a := newAPI(t, st, p, c.cfg, header)
			httpGot := [3]codes.Code{
				a.code("GET", "/v1/jobs/"+id, ""),
				a.watchCode(id),
				a.code("POST", "/v1/jobs/"+id+":cancel", ""),
			}
			httpHello := a.code("GET", "/v1/hello?name=x", "")

			if grpcGot != c.want {
				t.Errorf("gRPC: got %v, want %v", grpcGot, c.want)
			}
			if httpGot != c.want {
				t.Errorf("HTTP/JSON: got %v, want %v", httpGot, c.want)
			}
			if grpcHello != httpHello {
				t.Errorf("SayHello: gRPC %v, HTTP/JSON %v", grpcHello, httpHello)
			}
		})
	}
}

// grpcWatchCode drains a WatchJob stream and returns its outcome.
func grpcWatchCode(ctx context.Context, jc courierv1.JobServiceClient, id string) codes.Code {
	stream, err := jc.WatchJob(ctx, &courierv1.WatchJobRequest{Id: id})
	if err != nil {
		return status.Code(err)
	}
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return codes.OK
		}
		if err != nil {
			return status.Code(err)
		}
	}
}

// TestHTTPJSONEnqueuePollWatchCancel drives jobs through HTTP/JSON alone,
// with net/http: enqueue, poll until done, watch a job's progress to its
// end, cancel a running job under watch, list with filters; without a
// token, with one of the wrong role, and with bad input.
func TestHTTPJSONEnqueuePollWatchCancel(t *testing.T) {
	st, p := securedStack(t)
	tlsOnly := client.Config{CAFile: p.CAFile}
	writer := newAPI(t, st, p, tlsOnly, withBearer("writer-token"))
	reader := newAPI(t, st, p, tlsOnly, withBearer("reader-token"))
	admin := newAPI(t, st, p, tlsOnly, withBearer("admin-token"))
	anonymous := newAPI(t, st, p, tlsOnly, nil)
	run := fmt.Sprint(time.Now().UnixNano())
	echo := `{"payload": {"@type": "type.googleapis.com/courier.demo.v1.Echo", "message": "over http"}, "labels": {"run": "` + run + `"}}`

	// Without a token, or without the writer role, nothing is enqueued.
	if code := anonymous.code("POST", "/v1/jobs", echo); code != codes.Unauthenticated {
		t.Errorf("enqueue without a token: %v, want Unauthenticated", code)
	}
	if code := reader.code("POST", "/v1/jobs", echo); code != codes.PermissionDenied {
		t.Errorf("enqueue as a reader: %v, want PermissionDenied", code)
	}

	// Enqueue, then poll until the job ends.
	id := writer.enqueue(echo)
	var j apiJob
	deadline := time.Now().Add(time.Minute)
	for {
		if code, s := reader.do("GET", "/v1/jobs/"+id, "", &j); s != nil {
			t.Fatalf("poll: %d %+v", code, s)
		}
		if terminalState(j.State) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling is what this client does
	}
	if j.State != "SUCCEEDED" || j.Result["message"] != "over http" || j.Result["@type"] != "type.googleapis.com/courier.demo.v1.EchoResult" || j.Labels["run"] != run {
		t.Fatalf("polled job: %+v", j)
	}
	if code := anonymous.code("GET", "/v1/jobs/"+id, ""); code != codes.Unauthenticated {
		t.Errorf("get without a token: %v", code)
	}

	// Watch a job to its end: every state it passes through, with progress.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sleep := writer.enqueue(`{"payload": {"@type": "type.googleapis.com/courier.demo.v1.Sleep", "duration": "0.3s"}, "labels": {"run": "` + run + `"}}`)
	events, _, s := reader.watch(ctx, sleep)
	if s != nil {
		t.Fatalf("watch: %+v", s)
	}
	var states []string
	progressed := false
	for ev := range events {
		if ev.name != "job" {
			t.Fatalf("watch event %+v", ev)
		}
		var j apiJob
		if err := json.Unmarshal([]byte(ev.data), &j); err != nil || j.ID != sleep {
			t.Fatalf("watch event data %s: %v", ev.data, err)
		}
		if len(states) == 0 || states[len(states)-1] != j.State {
			states = append(states, j.State)
		}
		progressed = progressed || (j.Progress != nil && j.Progress.Fraction > 0)
	}
	if len(states) == 0 || states[len(states)-1] != "SUCCEEDED" || !strings.Contains(strings.Join(states, " "), "RUNNING") || !progressed {
		t.Fatalf("watched states %v (progress seen: %v), want RUNNING with progress, then SUCCEEDED", states, progressed)
	}

	// Cancel a running job that a client watches: the watch ends with it.
	long := writer.enqueue(`{"payload": {"@type": "type.googleapis.com/courier.demo.v1.Sleep", "duration": "3600s"}, "labels": {"run": "` + run + `"}}`)
	events, _, s = reader.watch(ctx, long)
	if s != nil {
		t.Fatalf("watch: %+v", s)
	}
	for ev := range events {
		var j apiJob
		json.Unmarshal([]byte(ev.data), &j)
		if j.State == "RUNNING" {
			break
		}
	}
	if code := reader.code("POST", "/v1/jobs/"+long+":cancel", ""); code != codes.PermissionDenied {
		t.Errorf("cancel as a reader: %v, want PermissionDenied", code)
	}
	var cancelled apiJob
	if code, s := admin.do("POST", "/v1/jobs/"+long+":cancel", "", &cancelled); s != nil || cancelled.State != "CANCELLED" {
		t.Fatalf("cancel: %d %+v %+v", code, s, cancelled)
	}
	var last sseEvent
	for ev := range events {
		last = ev
	}
	if !strings.Contains(last.data, `"CANCELLED"`) {
		t.Fatalf("the watch of a cancelled job ended with %+v", last)
	}

	// List, filtered by label, state and type, in pages.
	var list struct {
		Jobs          []apiJob `json:"jobs"`
		NextPageToken string   `json:"nextPageToken"`
	}
	reader.do("GET", "/v1/jobs?labels[run]="+run, "", &list)
	if len(list.Jobs) != 3 || list.Jobs[0].ID != long {
		t.Errorf("list by label: %+v, want the 3 jobs of this run, newest first", list.Jobs)
	}
	reader.do("GET", "/v1/jobs?state=CANCELLED&type=courier.demo.v1.Sleep&labels[run]="+run, "", &list)
	if len(list.Jobs) != 1 || list.Jobs[0].ID != long {
		t.Errorf("list by state, type and label: %+v", list.Jobs)
	}
	reader.do("GET", "/v1/jobs?pageSize=2&labels[run]="+run, "", &list)
	if len(list.Jobs) != 2 || list.NextPageToken == "" {
		t.Fatalf("first page of 2: %+v", list)
	}
	reader.do("GET", "/v1/jobs?pageSize=2&labels[run]="+run+"&pageToken="+list.NextPageToken, "", &list)
	if len(list.Jobs) != 1 || list.Jobs[0].ID != id || list.NextPageToken != "" {
		t.Errorf("second page: %+v", list)
	}
	reader.do("GET", "/v1/jobs?labels[run]=no-such-run", "", &list)
	if len(list.Jobs) != 0 {
		t.Errorf("list of another run: %+v", list.Jobs)
	}

	// Counts by type and state: this test's store holds this test's jobs only.
	var counts struct {
		Types []struct {
			Type                         string
			Queued, Succeeded, Cancelled string // int64 is a JSON string
			OldestQueuedTime             *string
		} `json:"types"`
	}
	if code, s := reader.do("GET", "/v1/jobs:count?type=courier.demo.v1.Sleep", "", &counts); s != nil {
		t.Fatalf("count: %d %+v", code, s)
	}
	if len(counts.Types) != 1 || counts.Types[0].Type != "courier.demo.v1.Sleep" || counts.Types[0].Succeeded != "1" || counts.Types[0].Cancelled != "1" || counts.Types[0].Queued != "0" || counts.Types[0].OldestQueuedTime != nil {
		t.Errorf("count of Sleep jobs: %+v, want 1 succeeded and 1 cancelled", counts.Types)
	}
	if code := anonymous.code("GET", "/v1/jobs:count", ""); code != codes.Unauthenticated {
		t.Errorf("count without a token: %v", code)
	}

	// Errors: google.rpc.Status JSON with the right HTTP status (code checks
	// the status against the code) and a message that says what is wrong.
	for _, c := range []struct {
		method, path, body string
		want               codes.Code
		says               string
	}{
		{"GET", "/v1/jobs/no-such-job", "", codes.NotFound, "no job has id"},
		{"GET", "/v1/jobs/no-such-job:watch", "", codes.NotFound, "no job has id"},
		{"POST", "/v1/jobs/no-such-job:cancel", "", codes.NotFound, "no job has id"},
		{"POST", "/v1/jobs/" + id + ":cancel", "", codes.FailedPrecondition, "already ended"},
		{"POST", "/v1/jobs", `{}`, codes.InvalidArgument, "payload is missing"},
		{"POST", "/v1/jobs", `{"payload": {"@type": "type.googleapis.com/courier.demo.v1.Echo"}, "idempotencyKye": "k"}`, codes.InvalidArgument, `unknown field "idempotencyKye"`},
		{"POST", "/v1/jobs", `{"payload": {"@type": "type.googleapis.com/no.such.Type"}}`, codes.InvalidArgument, "no.such.Type"},
		{"POST", "/v1/jobs", `not json`, codes.InvalidArgument, "not a courier.v1.EnqueueJobRequest"},
		{"GET", "/v1/jobs?state=DONE", "", codes.InvalidArgument, "DONE"},
		{"GET", "/v1/jobs?stat=QUEUED", "", codes.InvalidArgument, "stat"},
		{"GET", "/v1/jobs?labels[]=x", "", codes.InvalidArgument, "labels[KEY]=VALUE"},
		{"GET", "/v1/no-such-route", "", codes.NotFound, "no route"},
		{"DELETE", "/v1/jobs/" + id, "", codes.Unimplemented, "DELETE"},
	} {
		a := writer
		if c.method == "POST" && strings.Contains(c.path, ":cancel") {
			a = admin
		}
		_, s := a.do(c.method, c.path, c.body, nil)
		if s == nil || s.Code != c.want || !strings.Contains(s.Message, c.says) {
			t.Errorf("%s %s %s: %+v, want %v saying %q", c.method, c.path, c.body, s, c.want, c.says)
		}
		a.code(c.method, c.path, c.body) // checks the HTTP status of the code
	}
}

// TestHTTPJSONWatchEndsAtShutdown: a graceful shutdown ends an open
// HTTP/JSON watch at once with an error event (Unavailable), as it ends
// gRPC watches, so the stream does not hold the HTTP server's drain.
func TestHTTPJSONWatchEndsAtShutdown(t *testing.T) {
	st := startCourierd(t, demoConfig(t))
	a := &api{t: t, base: "http://" + st.HTTPAddr(), client: http.DefaultClient}
	id := a.enqueue(`{"payload": {"@type": "type.googleapis.com/courier.demo.v1.Sleep", "duration": "3600s"}}`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events, _, s := a.watch(ctx, id)
	if s != nil {
		t.Fatal(s)
	}
	for ev := range events {
		if strings.Contains(ev.data, `"RUNNING"`) {
			break
		}
	}
	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		stopped <- st.Shutdown(sctx) // cuts the running Sleep short: an error saying so
	}()
	var last sseEvent
	for ev := range events {
		last = ev
	}
	var status apiStatus
	if err := json.Unmarshal([]byte(last.data), &status); last.name != "error" || err != nil || status.Code != codes.Unavailable {
		t.Fatalf("the watch ended with %+v, want an error event with Unavailable", last)
	}
	<-stopped
}

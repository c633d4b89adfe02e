package httpjson_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/backend/hello"
	"github.com/courierq/courier/backend/httpjson"
	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

type env struct {
	base  string
	store jobs.Store
	jobs  *jobservice.Service
	srv   *backend.Server
}

// newEnv serves JobService (over a real SQLite store, open to readers) and
// Hello on a backend.Server that is not listening for gRPC at all: every
// call comes through the HTTP/JSON handler on an httptest server.
func newEnv(t *testing.T, auth backend.AuthConfig, keepAlive time.Duration) *env {
	t.Helper()
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	js, err := jobservice.New(jobservice.Config{Store: store, Types: jobservice.TypeMap{"courier.demo.v1.Echo": {MaxAttempts: 3}},
		Auth: backend.Policy{Rule: backend.Rule{Roles: []string{"reader"}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := backend.New(backend.Config{Addr: "127.0.0.1:0", Auth: auth, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		&hello.Service{Auth: hello.Open}, js)
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpjson.New(httpjson.Config{Server: srv, KeepAlive: keepAlive})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(httpjson.Prefix, h)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	t.Cleanup(func() { srv.Close() })
	return &env{base: ts.URL, store: store, jobs: js, srv: srv}
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestProxyHeadersTrustedByPeerAddress: over HTTP/JSON the proxy headers
// are trusted by the caller's address (the HTTP request's RemoteAddr), as
// over gRPC.
func TestProxyHeadersTrustedByPeerAddress(t *testing.T) {
	for _, c := range []struct {
		trusted string
		code    int
		says    string
	}{
		{"127.0.0.0/8", 200, `"jobs"`},
		{"10.0.0.0/8", 401, "not a trusted proxy"},
	} {
		e := newEnv(t, backend.AuthConfig{ProxyHeaders: true, TrustedProxies: []string{c.trusted}}, 0)
		resp, body := get(t, e.base+"/v1/jobs", map[string]string{"X-Webauth-User": "ann", "X-Webauth-Roles": "reader"})
		if resp.StatusCode != c.code || !strings.Contains(body, c.says) {
			t.Errorf("proxy headers from 127.0.0.1, trusted proxies %s: %d %s; want %d saying %q", c.trusted, resp.StatusCode, body, c.code, c.says)
		}
	}
}

// sse reads server-sent events, comments included (as name ":").
func sse(t *testing.T, body io.Reader) <-chan [2]string {
	events := make(chan [2]string, 10)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(body)
		var name, data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, ":"):
				events <- [2]string{":", line}
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			case line == "" && name != "":
				events <- [2]string{name, data}
				name, data = "", ""
			}
		}
	}()
	return events
}

// TestWatchStream: a watch sends the current state, keepalive comments
// while nothing changes, each change, and an error event when the server
// ends it (StopWatches, as at shutdown).
func TestWatchStream(t *testing.T) {
	e := newEnv(t, backend.AuthConfig{ProxyHeaders: true}, time.Millisecond)
	ctx := context.Background()
	payload, _ := anypb.New(&demov1.Echo{Message: "x"})
	enqueue := func() string {
		resp, err := e.jobs.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		return resp.JobId
	}
	watch := func(id string) (<-chan [2]string, func()) {
		req, _ := http.NewRequest("GET", e.base+"/v1/jobs/"+id+":watch", nil)
		req.Header.Set("X-Webauth-User", "ann")
		req.Header.Set("X-Webauth-Roles", "reader")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return sse(t, resp.Body), func() { resp.Body.Close() }
	}
	next := func(events <-chan [2]string, want string) [2]string {
		t.Helper()
		for ev := range events {
			if ev[0] == want {
				return ev
			}
		}
		t.Fatalf("the stream ended before a %q event", want)
		return [2]string{}
	}

	id := enqueue()
	events, closeWatch := watch(id)
	defer closeWatch()
	first := next(events, "job")
	var j courierv1.Job
	if err := protojson.Unmarshal([]byte(first[1]), &j); err != nil || j.Id != id || j.State != courierv1.State_QUEUED {
		t.Fatalf("first event: %s (%v)", first[1], err)
	}
	next(events, ":") // a keepalive while the job waits
	if _, err := e.jobs.CancelJob(ctx, &courierv1.CancelJobRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	last := next(events, "job")
	if err := protojson.Unmarshal([]byte(last[1]), &j); err != nil || j.State != courierv1.State_CANCELLED {
		t.Fatalf("after cancel: %s (%v)", last[1], err)
	}
	for ev := range events {
		if ev[0] != ":" {
			t.Fatalf("an event after the terminal state: %v", ev)
		}
	}

	// The server ends an open watch: an error event with Unavailable.
	id = enqueue()
	events, closeWatch2 := watch(id)
	defer closeWatch2()
	next(events, "job")
	e.jobs.StopWatches()
	ev := next(events, "error")
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(ev[1]), &st); err != nil || st.Code != 14 || !strings.Contains(st.Message, "shutting down") {
		t.Fatalf("error event %s: %+v %v; want Unavailable", ev[1], st, err)
	}
}

// TestNewChecksConfig: New names what is missing.
func TestNewChecksConfig(t *testing.T) {
	if _, err := httpjson.New(httpjson.Config{}); err == nil || !strings.Contains(err.Error(), "Server") {
		t.Errorf("New without a server: %v", err)
	}
}

// TestHelloOverHTTP: an open service answers anyone; a closed one answers
// a caller without credentials 401 with a Bearer challenge.
func TestHelloOverHTTP(t *testing.T) {
	e := newEnv(t, backend.AuthConfig{}, 0)
	resp, body := get(t, e.base+"/v1/hello?name=ann", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Hello, ann!") {
		t.Fatalf("GET /v1/hello: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, e.base+"/v1/jobs", nil)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || !strings.Contains(body, `"code":16`) && !strings.Contains(body, `"code": 16`) {
		t.Fatalf("GET /v1/jobs without credentials: %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/client"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// TestDashboardReadRoles: with grpc.devMode off and
// http.dashboard.readRoles set, dashboard pages need a caller that the gRPC
// server's authenticators recognise (bearer token or proxy headers) holding
// one of the roles; static files, /metrics and /readyz stay open.
func TestDashboardReadRoles(t *testing.T) {
	dir := t.TempDir()
	hash := func(tok string) string { h := sha256.Sum256([]byte(tok)); return hex.EncodeToString(h[:]) }
	tokens := fmt.Sprintf("tokens:\n- {sha256: %s, identity: vera, roles: [viewer]}\n- {sha256: %s, identity: otto, roles: [enqueuer]}\n",
		hash("viewer-token"), hash("other-token"))
	tokensPath := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokensPath, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	st := startCourierdDoc(t, fmt.Sprintf(`grpc:
  addr: 127.0.0.1:0
  auth:
    tokensFile: %s
    proxyHeaders: true
    trustedProxies: [127.0.0.0/8]
http:
  addr: 127.0.0.1:0
  dashboard:
    readRoles: [viewer, operator]
pubsub:
  emulator: embedded
store:
  path: %s
handlers:
  demo: true
`, tokensPath, filepath.Join(dir, "jobs.db")))
	base := "http://" + st.HTTPAddr()

	for _, c := range []struct {
		name, path string
		headers    map[string]string
		code       int
		want       string
	}{
		{"no credentials", "/jobs", nil, 401, "needs one of the roles"},
		{"bad token", "/jobs", map[string]string{"Authorization": "Bearer nope"}, 401, "unknown bearer token"},
		{"token without the role", "/", map[string]string{"Authorization": "Bearer other-token"}, 403, `token "otto" holds the roles [enqueuer]`},
		{"token with the role", "/jobs", map[string]string{"Authorization": "Bearer viewer-token"}, 200, `id="jobs"`},
		{"proxy with the role", "/", map[string]string{"X-Webauth-User": "ann", "X-Webauth-Roles": "dev, operator"}, 200, `id="overview"`},
		{"proxy without the role", "/jobs", map[string]string{"X-Webauth-User": "bob", "X-Webauth-Roles": "dev"}, 403, `proxy "bob"`},
		{"action without credentials", "/jobs/x/cancel", nil, 401, "needs one of the roles"},
		{"static files stay open", "/static/style.css", nil, 200, "font-family"},
		{"metrics stay open", "/metrics", nil, 200, "courier_"},
	} {
		method := http.MethodGet
		if strings.HasSuffix(c.path, "/cancel") {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, base+c.path, nil)
		for k, v := range c.headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %s %s = %d, want %d with %q; body: %.300s", c.name, method, c.path, resp.StatusCode, c.code, c.want, body)
		}
		if c.code == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without a Bearer challenge", c.name)
		}
	}
}

// TestDevDashboardRefusesForeignHosts: in dev mode the dashboard is
// unauthenticated on loopback, so a web page whose name was re-pointed at
// 127.0.0.1 (DNS rebinding) would be same-origin with it. A request naming
// a host other than the loopback names gets 421 and does nothing; by
// localhost or the bound address it works; every dashboard response has
// the security headers.
func TestDevDashboardRefusesForeignHosts(t *testing.T) {
	st := startCourierd(t, demoConfig(t))
	base := "http://" + st.HTTPAddr()
	_, port, _ := net.SplitHostPort(st.HTTPAddr())
	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	jc := courierv1.NewJobServiceClient(conn)
	long, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(time.Hour)})
	id := enqueue(t, jc, long, "").JobId

	send := func(method, path, host string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		req.Host = host
		req.Header.Set("Origin", "http://"+host) // what the browser sends: same-origin to it
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	foreign := "rebind.example:" + port
	for _, c := range []struct{ method, path string }{{"GET", "/"}, {"GET", "/jobs/" + id}, {"POST", "/jobs/" + id + "/cancel"}} {
		resp, body := send(c.method, c.path, foreign)
		if resp.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(body, "rebind.example") {
			t.Errorf("%s %s with Host %s: %d %q, want 421", c.method, c.path, foreign, resp.StatusCode, body)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s %s: no Content-Security-Policy", c.method, c.path)
		}
	}
	if j, err := jc.GetJob(context.Background(), &courierv1.GetJobRequest{Id: id}); err != nil || j.State == courierv1.State_CANCELLED {
		t.Fatalf("after a foreign-host cancel: %v %v, want the job not cancelled", j.GetState(), err)
	}
	if resp, body := send("GET", "/jobs/"+id, st.HTTPAddr()); resp.StatusCode != 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET by the bound address: %d %q", resp.StatusCode, body)
	}
	if resp, body := send("POST", "/jobs/"+id+"/cancel", "localhost:"+port); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST cancel by localhost: %d %q, want 303", resp.StatusCode, body)
	}
	if j, err := jc.GetJob(context.Background(), &courierv1.GetJobRequest{Id: id}); err != nil || j.State != courierv1.State_CANCELLED {
		t.Fatalf("after cancel by localhost: %v %v, want CANCELLED", j.GetState(), err)
	}
}

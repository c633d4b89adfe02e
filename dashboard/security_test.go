package dashboard_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/courierq/courier/dashboard"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
)

// do sends a request with an optional Host header and returns the
// response (body read) without following redirects.
func do(t *testing.T, method, u, host string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r, string(b)
}

// securedServer serves a dashboard over a SQLite store holding job j1, with
// cfg's Hosts, Authorize and Cancel.
func securedServer(t *testing.T, cfg dashboard.Config) *httptest.Server {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, _, err := s.Enqueue(context.Background(), jobs.EnqueueParams{Job: jobs.Job{ID: "j1", Type: "courier.demo.v1.Echo"}}); err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Types, cfg.Resolver = s, []string{"courier.demo.v1.Echo"}, protoregistry.GlobalTypes
	d, err := dashboard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return srv
}

func wantSecurityHeaders(t *testing.T, what string, r *http.Response) {
	t.Helper()
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: Content-Security-Policy %q allows inline script", what, csp)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("%s: X-Content-Type-Options %q, X-Frame-Options %q", what, r.Header.Get("X-Content-Type-Options"), r.Header.Get("X-Frame-Options"))
	}
}

// TestSecurityHeaders: every response, pages, fragments, static files,
// errors and refusals alike, carries the Content-Security-Policy (no inline
// script, no framing), nosniff and X-Frame-Options; and no page has inline
// script for the policy to break (confirmations are data-confirm, handled
// by live.js).
func TestSecurityHeaders(t *testing.T) {
	srv := securedServer(t, dashboard.Config{Cancel: func(context.Context, *http.Request, string) error { return nil }})
	inline := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|\son[a-z]+\s*=|javascript:`)
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/", 200},
		{"GET", "/jobs", 200},
		{"GET", "/jobs?fragment=1", 200},
		{"GET", "/jobs/j1", 200},
		{"GET", "/jobs/nope", 404},
		{"GET", "/jobs?state=bogus", 400},
		{"GET", "/static/live.js", 200},
		{"GET", "/static/", 404},
		{"POST", "/jobs/j1/cancel", 403}, // cross-origin
	} {
		r, body := do(t, c.method, srv.URL+c.path, "", "Origin", "http://elsewhere.example")
		if r.StatusCode != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, r.StatusCode, c.code)
		}
		wantSecurityHeaders(t, c.method+" "+c.path, r)
		if strings.HasSuffix(r.Header.Get("Content-Type"), "html; charset=utf-8") && inline.MatchString(body) {
			t.Errorf("%s %s has inline script: %q", c.method, c.path, inline.FindString(body))
		}
	}
	if _, body := do(t, "GET", srv.URL+"/jobs/j1", ""); !strings.Contains(body, `data-confirm="Cancel job j1?"`) {
		t.Errorf("the cancel form asks for no confirmation:\n%s", body)
	}
	if r, _ := do(t, "GET", srv.URL+"/static/live.js", ""); !strings.Contains(r.Header.Get("Content-Type"), "javascript") {
		t.Errorf("live.js served as %q", r.Header.Get("Content-Type"))
	}

	closed := securedServer(t, dashboard.Config{Authorize: func(*http.Request) error { return dashboard.ErrUnauthenticated }})
	r, _ := do(t, "GET", closed.URL+"/", "")
	if r.StatusCode != 401 {
		t.Fatalf("unauthorized GET /: %d", r.StatusCode)
	}
	wantSecurityHeaders(t, "401", r)
}

// TestStaticHasNoListing: /static/ serves its files, and 404 for the folder
// itself (no directory listing).
func TestStaticHasNoListing(t *testing.T) {
	srv := securedServer(t, dashboard.Config{})
	for _, p := range []string{"/static/", "/static", "/static/nope.js", "/static/./"} {
		code, body := get(t, srv.URL+p) // follows /static → /static/
		if code != 404 || strings.Contains(body, "live.js") {
			t.Errorf("GET %s: %d %q, want 404 without a listing", p, code, body)
		}
	}
	if code, _ := get(t, srv.URL+"/static/style.css"); code != 200 {
		t.Errorf("GET /static/style.css: %d", code)
	}
}

// TestHostCheck: with Config.Hosts, a request naming any other host is
// refused with 421 before it is served: a page whose name was re-pointed at
// 127.0.0.1 (DNS rebinding) is same-origin to the browser, so neither the
// Origin check nor CORS stops it; the Host header does.
func TestHostCheck(t *testing.T) {
	cancelled := 0
	srv := securedServer(t, dashboard.Config{Hosts: []string{"localhost", "127.0.0.1", "::1"},
		Cancel: func(context.Context, *http.Request, string) error { cancelled++; return nil }})
	for _, host := range []string{"rebind.example:8006", "rebind.example", "127.0.0.2:8006", "localhost.rebind.example", strings.Repeat("x", 1000)} {
		for _, c := range []struct{ method, path string }{{"GET", "/"}, {"GET", "/jobs/j1"}, {"GET", "/static/live.js"}, {"POST", "/jobs/j1/cancel"}} {
			r, body := do(t, c.method, srv.URL+c.path, host, "Origin", "http://"+host)
			if r.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(body, "localhost, 127.0.0.1, ::1") || !strings.Contains(body, "DNS rebinding") {
				t.Errorf("%s %s with Host %.40q: %d %q, want 421 naming the allowed hosts", c.method, c.path, host, r.StatusCode, body)
			}
			if len(body) > 600 {
				t.Errorf("%s %s: the refusal echoes the whole Host (%d bytes)", c.method, c.path, len(body))
			}
			wantSecurityHeaders(t, "421", r)
		}
	}
	if cancelled != 0 {
		t.Fatalf("a request for a foreign host cancelled the job %d times", cancelled)
	}
	for _, host := range []string{"localhost:8006", "LOCALHOST", "127.0.0.1:1", "[::1]:8006", ""} {
		if r, body := do(t, "GET", srv.URL+"/jobs/j1", host); r.StatusCode != 200 {
			t.Errorf("GET with Host %q: %d %q, want 200", host, r.StatusCode, body)
		}
	}
	if r, _ := do(t, "POST", srv.URL+"/jobs/j1/cancel", "localhost:8006", "Origin", "http://localhost:8006"); r.StatusCode != 303 || cancelled != 1 {
		t.Errorf("POST cancel for localhost: %d (cancelled %d times), want 303 and one cancel", r.StatusCode, cancelled)
	}
	for _, bad := range []string{"localhost:8006", "", "[::1]", "http://localhost"} {
		if _, err := dashboard.New(dashboard.Config{Store: nopStore{}, Hosts: []string{bad}}); err == nil || !strings.Contains(err.Error(), "Config.Hosts") {
			t.Errorf("New with Hosts [%q]: %v, want an error naming Config.Hosts", bad, err)
		}
	}
}

// nopStore satisfies Config.Store for New's validation.
type nopStore struct{ jobs.Store }

// failingStore fails every read the way a PostgreSQL store whose role may
// not log in does: naming the user, database and server.
type failingStore struct{ jobs.Store }

var errConnect = errors.New("failed to connect to `user=courier_prod database=jobs`: 10.0.0.5:5432: FATAL: role is not permitted to log in")

func (failingStore) List(context.Context, jobs.ListParams) ([]*jobs.Job, string, error) {
	return nil, "", errConnect
}
func (failingStore) Get(context.Context, string) (*jobs.Job, error)    { return nil, errConnect }
func (failingStore) Counts(context.Context) ([]jobs.TypeCounts, error) { return nil, errConnect }
func (failingStore) Throughput(context.Context, jobs.ThroughputParams) ([]jobs.ThroughputPoint, error) {
	return nil, errConnect
}

// TestStoreErrorsStayInTheLog: a failing store gets 503 saying what failed,
// and its error (user, database, host) goes to the log, not to the page.
func TestStoreErrorsStayInTheLog(t *testing.T) {
	var logged strings.Builder
	d, err := dashboard.New(dashboard.Config{Store: failingStore{}, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	for _, p := range []string{"/", "/jobs", "/jobs/j1"} {
		code, body := get(t, srv.URL+p)
		if code != 503 || !strings.Contains(body, "failed; the server log has the error") {
			t.Errorf("GET %s: %d %q, want 503 saying the log has the error", p, code, body)
		}
		for _, secret := range []string{"courier_prod", "database=", "10.0.0.5", "FATAL"} {
			if strings.Contains(body, secret) {
				t.Errorf("GET %s shows %q: %q", p, secret, body)
			}
		}
	}
	if !strings.Contains(logged.String(), "courier_prod") {
		t.Errorf("the log lacks the store's error:\n%s", logged.String())
	}
}

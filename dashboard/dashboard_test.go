package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/courierq/courier/dashboard"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

func serve(t *testing.T, cancel func(context.Context, *http.Request, string) error) (*httptest.Server, jobs.Store) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	data, _ := proto.Marshal(&demov1.Echo{Message: "hi <script>"})
	if _, _, err := s.Enqueue(context.Background(), jobs.EnqueueParams{Job: jobs.Job{ID: "j1", Type: "courier.demo.v1.Echo", Payload: data, Labels: map[string]string{"team": "a"}}}); err != nil {
		t.Fatal(err)
	}
	d, err := dashboard.New(dashboard.Config{Store: s, Types: []string{"courier.demo.v1.Echo"}, Resolver: protoregistry.GlobalTypes, Cancel: cancel, ActionsNote: "note"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return srv, s
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	r, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// TestJobTimeline: the job page lists the job's state changes in order,
// with attempts and the retry's error.
func TestJobTimeline(t *testing.T) {
	srv, s := serve(t, nil)
	ctx := context.Background()
	if _, err := s.Start(ctx, jobs.StartParams{ID: "j1", Attempt: 1, Lease: "lease-1", LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fail(ctx, jobs.FailParams{ID: "j1", Code: 14, Message: "backend <down>", Retry: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, jobs.StartParams{ID: "j1", Attempt: 2, Lease: "lease-2", LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/jobs/j1", "/jobs/j1?fragment=1"} {
		code, body := get(t, srv.URL+path)
		if code != 200 {
			t.Fatalf("GET %s: %d\n%s", path, code, body)
		}
		rows := regexp.MustCompile(`<tr class="event" data-state="(\w+)" data-attempt="(\d+)">.*?</tr>`).FindAllStringSubmatch(body, -1)
		var got []string
		for _, r := range rows {
			got = append(got, r[1]+"/"+r[2])
		}
		if want := "QUEUED/0 RUNNING/1 QUEUED/1 RUNNING/2"; strings.Join(got, " ") != want {
			t.Errorf("GET %s: timeline %q, want %q; body:\n%s", path, strings.Join(got, " "), want, body)
		}
		if len(rows) == 4 && !strings.Contains(rows[2][0], "backend &lt;down&gt;") {
			t.Errorf("GET %s: retry row %q lacks the escaped error", path, rows[2][0])
		}
	}
}

func TestViews(t *testing.T) {
	srv, _ := serve(t, nil)
	for _, c := range []struct {
		path, want string
		code       int
	}{
		{"/", `data-type="courier.demo.v1.Echo"`, 200},
		{"/jobs?label=team%3Da", `data-id="j1"`, 200},
		{"/jobs?label=team%3Db", "No jobs match.", 200},
		{"/jobs?state=QUEUED&fragment=1", `data-state="QUEUED"`, 200},
		{"/jobs?state=bogus", "state \"bogus\" is unknown", 400},
		{"/jobs?label=nokey", "must be KEY=VALUE", 400},
		{"/jobs/j1", `&#34;message&#34;: &#34;hi &lt;script&gt;&#34;`, 200},
		{"/jobs/nope", "no job", 404},
		{"/static/live.js", "fragment", 200},
	} {
		code, body := get(t, srv.URL+c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d, want %d with %q; body:\n%s", c.path, code, c.code, c.want, body)
		}
	}
	// No Cancel func: no button, and POST is refused naming why.
	if _, body := get(t, srv.URL+"/jobs/j1"); strings.Contains(body, `id="cancel"`) {
		t.Error("cancel button shown without a Cancel func")
	}
	r, err := http.PostForm(srv.URL+"/jobs/j1/cancel", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 403 || !strings.Contains(string(b), "actions are off: note") {
		t.Fatalf("POST cancel without actions: %d %q", r.StatusCode, b)
	}
}

func TestCancelGoesThroughCancelFunc(t *testing.T) {
	var gotAuth string
	srv, _ := serve(t, func(ctx context.Context, r *http.Request, id string) error {
		gotAuth = r.Header.Get("Authorization")
		if gotAuth != "Bearer good" {
			return errors.New("PermissionDenied: no")
		}
		return nil
	})
	post := func(auth, origin string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", srv.URL+"/jobs/j1/cancel", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
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
	if r, body := post("Bearer good", "http://evil.example"); r.StatusCode != 403 || !strings.Contains(body, "cross-origin") {
		t.Fatalf("cross-origin POST: %d %q", r.StatusCode, body)
	}
	if r, _ := post("Bearer bad", srv.URL); r.StatusCode != 303 || !strings.Contains(r.Header.Get("Location"), "cancel+failed") {
		t.Fatalf("refused cancel: %d %q, want a redirect with the failure", r.StatusCode, r.Header.Get("Location"))
	}
	if r, _ := post("Bearer good", srv.URL); r.StatusCode != 303 || !strings.Contains(r.Header.Get("Location"), "flash=cancelled") || gotAuth != "Bearer good" {
		t.Fatalf("allowed cancel: %d %q (auth seen %q)", r.StatusCode, r.Header.Get("Location"), gotAuth)
	}
}

// TestPaging: the list shows 50 jobs and a next link that shows the rest.
func TestPaging(t *testing.T) {
	srv, s := serve(t, nil)
	for i := range 59 { // plus j1: 60
		if _, _, err := s.Enqueue(context.Background(), jobs.EnqueueParams{Job: jobs.Job{ID: fmt.Sprintf("p%02d", i), Type: "courier.demo.v1.Echo"}}); err != nil {
			t.Fatal(err)
		}
	}
	_, body := get(t, srv.URL+"/jobs?type=courier.demo.v1.Echo")
	if n := strings.Count(body, "<tr data-id="); n != 50 {
		t.Fatalf("first page has %d rows, want 50", n)
	}
	m := regexp.MustCompile(`id="next" href="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("first page has no next link")
	}
	next := html.UnescapeString(m[1])
	if !strings.Contains(next, "type=courier.demo.v1.Echo") {
		t.Errorf("next link %q lost the type filter", next)
	}
	_, body = get(t, srv.URL+next)
	if n := strings.Count(body, "<tr data-id="); n != 10 || strings.Contains(body, `id="next"`) {
		t.Fatalf("second page has %d rows (want 10) or a next link", n)
	}
}

func TestReenqueueRoutes(t *testing.T) {
	var got []string
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	for _, id := range []string{"f1", "f2", "ok"} {
		if _, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: id, Type: "courier.demo.v1.Echo", MaxAttempts: 1}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Start(ctx, jobs.StartParams{ID: id, Attempt: 1, Lease: "lease-1", LeaseFor: time.Minute}); err != nil {
			t.Fatal(err)
		}
		if id == "ok" {
			_, err = s.Succeed(ctx, jobs.SucceedParams{ID: id})
		} else {
			_, err = s.Fail(ctx, jobs.FailParams{ID: id, Code: 2, Message: "boom"})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := dashboard.New(dashboard.Config{Store: s, Reenqueue: func(_ context.Context, _ *http.Request, j *jobs.Job) (string, error) {
		got = append(got, j.ID)
		return "new-" + j.ID, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string) *http.Response {
		r, err := c.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r
	}
	if r := post("/jobs/ok/reenqueue"); r.StatusCode != http.StatusConflict {
		t.Errorf("re-enqueue of a SUCCEEDED job: %d, want 409", r.StatusCode)
	}
	if r := post("/jobs/f1/reenqueue"); r.StatusCode != 303 || !strings.HasPrefix(r.Header.Get("Location"), "/jobs/new-f1?") {
		t.Errorf("re-enqueue of f1: %d %q, want a redirect to the new job", r.StatusCode, r.Header.Get("Location"))
	}
	got = nil
	if r := post("/types/courier.demo.v1.Echo/reenqueue-failed"); r.StatusCode != 303 || !strings.Contains(r.Header.Get("Location"), "re-enqueued+2+failed") {
		t.Errorf("re-enqueue all: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if len(got) != 2 {
		t.Errorf("re-enqueue all re-enqueued %v, want f1 and f2", got)
	}
}

// TestOverviewShowsRateLimitWaiting: the overview's rate-limit column shows
// what Config.RateLimitWaiting reports, and is hidden without it.
func TestOverviewShowsRateLimitWaiting(t *testing.T) {
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d, err := dashboard.New(dashboard.Config{Store: s, Types: []string{"courier.demo.v1.Echo"}, Resolver: protoregistry.GlobalTypes,
		RateLimitWaiting: func(typ string) int { return map[string]int{"courier.demo.v1.Echo": 7}[typ] }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	defer srv.Close()
	if _, body := get(t, srv.URL+"/"); !strings.Contains(body, "Rate-limit waiting") || !strings.Contains(body, `<td class="num waiting">7</td>`) {
		t.Fatalf("overview lacks the rate-limit column or its count:\n%s", body)
	}
	plain, _ := serve(t, nil)
	if _, body := get(t, plain.URL+"/"); strings.Contains(body, "Rate-limit waiting") {
		t.Fatal("rate-limit column shown without Config.RateLimitWaiting")
	}
}

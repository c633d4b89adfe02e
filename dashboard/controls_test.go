package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/dashboard"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
)

// TestSchedulesAndPausedTypes: the schedules page lists the store's
// schedules; the overview shows paused types, and its pause and resume
// buttons go through Config.PauseType, refusing cross-site posts.
func TestSchedulesAndPausedTypes(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateSchedule(ctx, jobs.Schedule{Name: "nightly <b>", Type: "courier.demo.v1.Echo", Cron: "0 2 * * *", TimeZone: "Europe/Paris",
		NextTime: time.Date(2030, 1, 1, 1, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	var calls []string
	d, err := dashboard.New(dashboard.Config{Store: s, Types: []string{"courier.demo.v1.Echo", "courier.demo.v1.Sleep"}, Schedules: s, Paused: s,
		PauseType: func(ctx context.Context, r *http.Request, typ string, pause bool) error {
			calls = append(calls, typ)
			if pause {
				_, err := s.PauseType(ctx, typ)
				return err
			}
			_, err := s.ResumeType(ctx, typ)
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptestServer(t, d)

	code, body := get(t, srv+"/schedules")
	if code != 200 || !strings.Contains(body, "nightly &lt;b&gt;") || !strings.Contains(body, "0 2 * * * (Europe/Paris)") || !strings.Contains(body, "2030-01-01 01:00:00.000Z") {
		t.Fatalf("GET /schedules: %d\n%s", code, body)
	}
	if _, body = get(t, srv+"/"); !strings.Contains(body, `href="/schedules"`) || !strings.Contains(body, `action="/types/courier.demo.v1.Echo/pause"`) {
		t.Fatalf("overview without a paused type:\n%s", body)
	}

	// A cross-site post is refused; a same-origin one pauses.
	req, _ := http.NewRequest("POST", srv+"/types/courier.demo.v1.Echo/pause", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(calls) != 0 {
		t.Fatalf("cross-site pause: %d, calls %v; want 403 and no call", resp.StatusCode, calls)
	}
	resp, err = noRedirect.PostForm(srv+"/types/courier.demo.v1.Echo/pause", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(calls) != 1 {
		t.Fatalf("pause: %d, calls %v", resp.StatusCode, calls)
	}
	_, body = get(t, srv+"/")
	if !strings.Contains(body, `<span class="paused"`) || !strings.Contains(body, `action="/types/courier.demo.v1.Echo/resume"`) || !strings.Contains(body, `action="/types/courier.demo.v1.Sleep/pause"`) {
		t.Fatalf("overview with Echo paused:\n%s", body)
	}
	resp, err = noRedirect.PostForm(srv+"/types/courier.demo.v1.Echo/resume", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if list, _ := s.PausedTypes(ctx); len(list) != 0 {
		t.Fatalf("paused types after resume: %v", list)
	}
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func httptestServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

package readiness_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/readiness"
)

func TestCheckerReportsAndNotifiesChanges(t *testing.T) {
	var storeErr error
	var changes []bool
	var lastReport readiness.Report
	c, err := readiness.New(readiness.Config{
		Checks: []readiness.Check{
			{Name: "store", Func: func(context.Context) error { return storeErr }},
			{Name: "pubsub", Func: func(context.Context) error { return nil }},
		},
		OnChange: func(ready bool, r readiness.Report) { changes, lastReport = append(changes, ready), r },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c.Check(ctx)
	c.Check(ctx)
	// The error names the database user and database, as pgx's do: the
	// unauthenticated /readyz must not show it; OnChange gets it.
	storeErr = errors.New(`failed to connect to user=courier database=prod: FATAL: role "courier" is not permitted to log in`)
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz?format=json", nil))
	var r readiness.Report
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("json body %q: %v", rec.Body, err)
	}
	if rec.Code != 503 || r.Ready || r.Checks["store"] != readiness.FailedSummary || r.Checks["pubsub"] != "ok" {
		t.Fatalf("unready /readyz: %d %+v", rec.Code, r)
	}
	rec = httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if body := rec.Body.String(); rec.Code != 503 || !strings.Contains(body, "store: "+readiness.FailedSummary) {
		t.Fatalf("unready /readyz as text: %d %q", rec.Code, body)
	}
	for _, body := range []string{rec.Body.String(), string(mustJSON(t, c))} {
		for _, secret := range []string{"courier", "prod", "FATAL"} {
			if strings.Contains(body, secret) {
				t.Errorf("/readyz shows %q: %q", secret, body)
			}
		}
	}
	if got := lastReport.Errors["store"]; got != storeErr {
		t.Errorf("OnChange got store error %v, want the check's error", got)
	}
	storeErr = nil
	if err := c.Add(readiness.Check{Name: "temporal", Func: func(context.Context) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "ready\n") || !strings.Contains(rec.Body.String(), "temporal: ok") {
		t.Fatalf("ready /readyz: %d %q", rec.Code, rec.Body)
	}
	if want := []bool{true, false, true}; len(changes) != 3 || changes[0] != want[0] || changes[1] != want[1] || changes[2] != want[2] {
		t.Fatalf("OnChange saw %v, want %v (only changes)", changes, want)
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []readiness.Config{
		{},
		{Checks: []readiness.Check{{Name: "x"}}},
		{Checks: []readiness.Check{{Name: "x", Func: func(context.Context) error { return nil }}}, Timeout: -1},
	} {
		if _, err := readiness.New(cfg); err == nil || !strings.HasPrefix(err.Error(), "readiness: ") {
			t.Errorf("New(%+v) = %v, want a readiness: error", cfg, err)
		}
	}
}

// mustJSON returns /readyz's JSON body, asked for by Accept.
func mustJSON(t *testing.T, c *readiness.Checker) []byte {
	t.Helper()
	req := httptest.NewRequest("GET", "/readyz", nil)
	req.Header.Set("Accept", "application/json")
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	return rec.Body.Bytes()
}

// TestTimeoutSummary: a check that does not answer within Timeout is
// reported as such, without its error.
func TestTimeoutSummary(t *testing.T) {
	c, err := readiness.New(readiness.Config{Timeout: 10 * time.Millisecond, Checks: []readiness.Check{
		{Name: "pubsub", Func: func(ctx context.Context) error {
			<-ctx.Done()
			return fmt.Errorf("pubsub: listing topics of secret-project: %w", ctx.Err())
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Check(context.Background())
	if r.Ready || r.Checks["pubsub"] != readiness.TimeoutSummary || !errors.Is(r.Errors["pubsub"], context.DeadlineExceeded) {
		t.Fatalf("report %+v", r)
	}
}

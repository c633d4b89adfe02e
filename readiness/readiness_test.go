package readiness_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/courierq/courier/readiness"
)

func TestCheckerReportsAndNotifiesChanges(t *testing.T) {
	var storeErr error
	var changes []bool
	c, err := readiness.New(readiness.Config{
		Checks: []readiness.Check{
			{Name: "store", Func: func(context.Context) error { return storeErr }},
			{Name: "pubsub", Func: func(context.Context) error { return nil }},
		},
		OnChange: func(ready bool, _ readiness.Report) { changes = append(changes, ready) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c.Check(ctx)
	c.Check(ctx)
	storeErr = errors.New("store down")
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz?format=json", nil))
	var r readiness.Report
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("json body %q: %v", rec.Body, err)
	}
	if rec.Code != 503 || r.Ready || r.Checks["store"] != "store down" || r.Checks["pubsub"] != "ok" {
		t.Fatalf("unready /readyz: %d %+v", rec.Code, r)
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

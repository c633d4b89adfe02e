// Package readiness answers "can this process do its work now?": it runs
// named checks (the job store's Ping, a cheap Pub/Sub admin call, Temporal
// when configured), each under a short timeout, serves the result as
// /readyz, and reports changes (courierd sets the gRPC health status of its
// services to match, and logs the errors). /readyz is unauthenticated, so it
// names the failing checks but never shows their errors, which can hold
// connection details (database user and name, hosts).
//
// It is for courierd. It is not liveness: /healthz says only that the
// process serves HTTP, and a failing dependency must not get it restarted.
package readiness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Check is one dependency.
type Check struct {
	// Name says which part, e.g. "store" or "pubsub".
	Name string
	// Func returns nil when the part is reachable. It must honour ctx.
	Func func(ctx context.Context) error
}

// Config configures a Checker. Checks is required.
type Config struct {
	Checks []Check
	// Timeout bounds each check. 0 means 2s.
	Timeout time.Duration
	// Interval is how often Run checks. 0 means 5s.
	Interval time.Duration
	// OnChange, when set, is called with the new readiness whenever it
	// changes (and once with the first result).
	OnChange func(ready bool, r Report)
}

// Report is the result of one round of checks.
type Report struct {
	Ready bool `json:"ready"`
	// Checks maps each check's name to "ok", or to a summary of its failure
	// that is safe to show anyone who reaches /readyz (unauthenticated):
	// FailedSummary, or TimeoutSummary when the check ran out of time.
	Checks map[string]string `json:"checks"`
	// Errors holds the failing checks' errors, for the log: they may name
	// hosts, database users and databases, so /readyz never shows them.
	Errors map[string]error `json:"-"`
}

// The summaries /readyz shows for a failing check.
const (
	FailedSummary  = "failing (the server log has the error)"
	TimeoutSummary = "failing: no answer in time (the server log has the error)"
)

// Checker runs the checks.
type Checker struct {
	cfg Config

	mu     sync.Mutex
	checks []Check
	known  bool
	last   bool
}

// New validates cfg.
func New(cfg Config) (*Checker, error) {
	if len(cfg.Checks) == 0 {
		return nil, errors.New("readiness: Config.Checks is empty; add at least the store check")
	}
	for i, c := range cfg.Checks {
		if c.Name == "" || c.Func == nil {
			return nil, fmt.Errorf("readiness: Config.Checks[%d] needs a Name and a Func", i)
		}
	}
	if cfg.Timeout < 0 || cfg.Interval < 0 {
		return nil, fmt.Errorf("readiness: negative Timeout (%v) or Interval (%v); use 0 for 2s and 5s", cfg.Timeout, cfg.Interval)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	return &Checker{cfg: cfg, checks: append([]Check(nil), cfg.Checks...)}, nil
}

// Add adds a check (e.g. Temporal, once its client exists). It is safe to
// call at any time; the next Check runs it.
func (c *Checker) Add(ch Check) error {
	if ch.Name == "" || ch.Func == nil {
		return errors.New("readiness: Add needs a Check with a Name and a Func")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks = append(c.checks, ch)
	return nil
}

// Check runs every check concurrently and reports, calling OnChange when
// readiness changed since the last Check.
func (c *Checker) Check(ctx context.Context) Report {
	c.mu.Lock()
	checks := c.checks
	c.mu.Unlock()
	r := Report{Ready: true, Checks: make(map[string]string, len(checks)), Errors: map[string]error{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ch := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
			defer cancel()
			err := ch.Func(cctx)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && cctx.Err() != nil && ctx.Err() == nil:
				r.Ready = false
				r.Checks[ch.Name], r.Errors[ch.Name] = TimeoutSummary, err
			case err != nil:
				r.Ready = false
				r.Checks[ch.Name], r.Errors[ch.Name] = FailedSummary, err
			default:
				r.Checks[ch.Name] = "ok"
			}
		})
	}
	wg.Wait()
	c.mu.Lock()
	changed := !c.known || c.last != r.Ready
	c.known, c.last = true, r.Ready
	c.mu.Unlock()
	if changed && c.cfg.OnChange != nil {
		c.cfg.OnChange(r.Ready, r)
	}
	return r
}

// Run checks every Interval until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ServeHTTP answers /readyz: 200 when ready, 503 naming the failing parts
// otherwise; a JSON body with ?format=json (or Accept: application/json),
// else text lines "name: ok|summary". It shows no error text (see Report);
// OnChange gets the errors, for the log.
func (c *Checker) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r := c.Check(req.Context())
	c.mu.Lock()
	checks := c.checks
	c.mu.Unlock()
	code := http.StatusOK
	if !r.Ready {
		code = http.StatusServiceUnavailable
	}
	if req.URL.Query().Get("format") == "json" || req.Header.Get("Accept") == "application/json" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	if r.Ready {
		fmt.Fprintln(w, "ready")
	} else {
		fmt.Fprintln(w, "not ready")
	}
	for _, ch := range checks {
		fmt.Fprintf(w, "%s: %s\n", ch.Name, r.Checks[ch.Name])
	}
}

package demo_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/workflows"
	"github.com/courierq/courier/workflows/demo"
)

// run runs one Bisect workflow on the SDK's test environment (no server),
// with the real activity and no test delay.
func run(t *testing.T, in *demov1.Bisect) (*testsuite.TestWorkflowEnvironment, *demov1.BisectResult, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	demo.RegisterWorker(env, demo.Config{TestDelay: -1})
	env.ExecuteWorkflow(workflows.Name[*demov1.Bisect](), in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		return env, nil, err
	}
	var res *demov1.BisectResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatalf("decoding the result: %v", err)
	}
	return env, res, nil
}

func TestBisectFindsTheCulprit(t *testing.T) {
	for _, tc := range []struct{ good, bad, culprit int64 }{
		{0, 1, 1},
		{0, 2, 1},
		{0, 2, 2},
		{0, 1000, 1},
		{0, 1000, 737},
		{0, 1000, 1000},
		{-50, 50, 0},
		{100, 1 << 20, 123457},
	} {
		t.Run(fmt.Sprintf("%d-%d-%d", tc.good, tc.bad, tc.culprit), func(t *testing.T) {
			env, res, err := run(t, &demov1.Bisect{Good: tc.good, Bad: tc.bad, Culprit: tc.culprit})
			if err != nil {
				t.Fatal(err)
			}
			if res.GetCulprit() != tc.culprit {
				t.Errorf("culprit %d, want %d", res.GetCulprit(), tc.culprit)
			}
			if int(res.GetSteps()) != len(res.GetTested()) {
				t.Errorf("steps %d but %d commits tested", res.GetSteps(), len(res.GetTested()))
			}
			tested := res.GetTested()
			if len(tested) < 2 || tested[0] != tc.good || tested[1] != tc.bad {
				t.Fatalf("tested %v: want the endpoints %d and %d first", tested, tc.good, tc.bad)
			}
			// A bisection: at most ceil(log2(range)) tests after the endpoints,
			// each strictly inside the range.
			maxSteps := 2 + int(math.Ceil(math.Log2(float64(tc.bad-tc.good))))
			if len(tested) > maxSteps {
				t.Errorf("%d tests, want at most %d: %v", len(tested), maxSteps, tested)
			}
			for _, c := range tested[2:] {
				if c <= tc.good || c >= tc.bad {
					t.Errorf("tested commit %d outside (%d, %d)", c, tc.good, tc.bad)
				}
			}
			p := queryProgress(t, env)
			if p.Fraction != 1 || !strings.Contains(p.Message, fmt.Sprintf("commit %d", tc.culprit)) {
				t.Errorf("final progress %+v, want 1 naming commit %d", p, tc.culprit)
			}
		})
	}
}

func queryProgress(t *testing.T, env *testsuite.TestWorkflowEnvironment) workflows.Progress {
	t.Helper()
	v, err := env.QueryWorkflow(workflows.ProgressQuery)
	if err != nil {
		t.Fatalf("query %s: %v", workflows.ProgressQuery, err)
	}
	var p workflows.Progress
	if err := v.Get(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBisectProgressMovesAsTheRangeShrinks(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	demo.RegisterWorker(env, demo.Config{TestDelay: -1})
	// Query after each activity: the workflow has set the progress of the
	// step it is on.
	var seen []workflows.Progress
	env.SetOnActivityStartedListener(func(*activity.Info, context.Context, converter.EncodedValues) {
		seen = append(seen, queryProgress(t, env))
	})
	env.ExecuteWorkflow(workflows.Name[*demov1.Bisect](), &demov1.Bisect{Good: 0, Bad: 1024, Culprit: 300})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// 2 endpoint tests at 0, then 10 halvings: 0, 0.1, ..., 0.9.
	if len(seen) != 12 {
		t.Fatalf("%d activities seen, want 12: %+v", len(seen), seen)
	}
	for i, p := range seen[2:] {
		want := float64(i) / 10
		if math.Abs(p.Fraction-want) > 1e-9 || !strings.Contains(p.Message, "candidates left") {
			t.Errorf("progress at halving %d is %+v, want fraction %v", i, p, want)
		}
	}
}

func TestBisectFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *demov1.Bisect
		want string
	}{
		{"culprit after bad", &demov1.Bisect{Good: 0, Bad: 100, Culprit: 500}, "commit 100 was given as bad but tests good"},
		{"culprit at good", &demov1.Bisect{Good: 10, Bad: 100, Culprit: 10}, "commit 10 was given as good but tests bad"},
		{"bad before good", &demov1.Bisect{Good: 10, Bad: 5, Culprit: 7}, "bad commit 5 is not after good commit 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, tc.in)
			var app *temporal.ApplicationError
			if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(app.Message(), tc.want) {
				t.Fatalf("got %v, want a non-retryable application error saying %q", err, tc.want)
			}
		})
	}
}

func TestFraction(t *testing.T) {
	for _, tc := range []struct {
		total, left int64
		want        float64
	}{
		{1024, 1024, 0}, {1024, 512, 0.1}, {1024, 2, 0.9}, {1024, 1, 1}, {1, 1, 1}, {1000, 1000, 0},
	} {
		if got := demo.Fraction(tc.total, tc.left); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Fraction(%d, %d) = %v, want %v", tc.total, tc.left, got, tc.want)
		}
	}
}

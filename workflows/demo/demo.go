// Package demo holds courier's demo workflow job type,
// courier.demo.v1.Bisect: a Temporal workflow that finds the first bad
// "commit" in an integer range the way `git bisect` does, testing one commit
// per activity and reporting progress as the range shrinks. The embedded
// demo with Temporal (make run-temporal) and courier's own tests register it.
// It is an example and a test fixture, not a workflow to build on.
//
// Both sides register from one Config: Register adds the job type to a
// handler registry (the handler starts and follows the workflow), and
// RegisterWorker adds the workflow and its activity to a Temporal worker.
package demo

import (
	"context"
	"fmt"
	"math"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/courierq/courier/handlers"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/workflows"
)

// DefaultTestDelay is how long testing one commit takes when Config.TestDelay
// is zero: long enough to watch the progress move in the demo.
const DefaultTestDelay = time.Second

// Config configures the Bisect job type. The zero value is valid apart from
// TaskQueue, which Register needs.
type Config struct {
	// TaskQueue is the Temporal task queue Bisect workflows run on; the
	// worker that RegisterWorker fills must poll it. "" means
	// workflows.DefaultTaskQueue.
	TaskQueue string
	// TestDelay is how long the activity takes to test one commit (it
	// sleeps). 0 means DefaultTestDelay; negative means no sleep.
	TestDelay time.Duration
	// OnTest, when set, is called by the activity before it tests a commit;
	// an error fails that activity attempt (it is retried). Tests use it to
	// hold a bisection at a known step. nil means nothing.
	OnTest func(ctx context.Context, commit int64) error
	// Handler configures the job type's handler (see workflows.Spec).
	Handler handlers.Config
	// ExecutionTimeout, ProgressInterval: see workflows.Spec.
	ExecutionTimeout, ProgressInterval time.Duration
}

// Spec is the workflows.Spec of Bisect jobs under cfg.
func Spec(cfg Config) workflows.Spec[*demov1.Bisect, *demov1.BisectResult] {
	tq := cfg.TaskQueue
	if tq == "" {
		tq = workflows.DefaultTaskQueue
	}
	return workflows.Spec[*demov1.Bisect, *demov1.BisectResult]{
		Workflow:         Bisect,
		TaskQueue:        tq,
		Handler:          cfg.Handler,
		ExecutionTimeout: cfg.ExecutionTimeout,
		ProgressInterval: cfg.ProgressInterval,
	}
}

// Register registers the courier.demo.v1.Bisect job type in reg, starting
// its workflows through c.
func Register(reg *handlers.Registry, c client.Client, cfg Config) error {
	return workflows.Register(reg, c, Spec(cfg))
}

// RegisterWorker registers the Bisect workflow and its activity in r (a
// Temporal worker, or the SDK's test environment).
func RegisterWorker(r worker.Registry, cfg Config) {
	workflows.RegisterWorkflow(r, Spec(cfg))
	r.RegisterActivityWithOptions(&Activities{cfg: cfg}, activity.RegisterOptions{Name: activityPrefix})
}

// activityPrefix names the activities of Activities: the SDK registers each
// method as prefix + method name.
const activityPrefix = "courier.demo.v1.Bisect."

// TestCommitActivity is the activity type name of Activities.TestCommit.
const TestCommitActivity = activityPrefix + "TestCommit"

// TestCommitParams are the arguments of the TestCommit activity.
type TestCommitParams struct {
	Commit  int64 `json:"commit"`
	Culprit int64 `json:"culprit"`
}

// Activities are the Bisect workflow's activities. RegisterWorker makes them.
type Activities struct{ cfg Config }

// TestCommit "builds and tests" a commit: it sleeps for the configured
// TestDelay and reports whether the commit is bad (at or after the culprit).
func (a *Activities) TestCommit(ctx context.Context, p TestCommitParams) (bool, error) {
	if a.cfg.OnTest != nil {
		if err := a.cfg.OnTest(ctx, p.Commit); err != nil {
			return false, err
		}
	}
	d := a.cfg.TestDelay
	if d == 0 {
		d = DefaultTestDelay
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
	return p.Commit >= p.Culprit, nil
}

// Bisect is the workflow of courier.demo.v1.Bisect jobs. It tests both
// endpoints first (a good commit that tests bad, or a bad one that tests
// good, fails the workflow, as with wrong endpoints in a real bisection), then
// halves the range (good, bad] until one commit is left: the culprit.
// Progress is the share of the halvings done.
func Bisect(ctx workflow.Context, in *demov1.Bisect) (*demov1.BisectResult, error) {
	good, bad, culprit := in.GetGood(), in.GetBad(), in.GetCulprit()
	if bad <= good {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("demo: Bisect bad commit %d is not after good commit %d; give good < bad", bad, good), "InvalidArgument", nil)
	}
	progress, err := workflows.TrackProgress(ctx)
	if err != nil {
		return nil, err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	res := &demov1.BisectResult{}
	test := func(commit int64) (isBad bool, err error) {
		err = workflow.ExecuteActivity(ctx, TestCommitActivity, TestCommitParams{Commit: commit, Culprit: culprit}).Get(ctx, &isBad)
		if err != nil {
			return false, err
		}
		res.Tested = append(res.Tested, commit)
		res.Steps++
		return isBad, nil
	}

	*progress = workflows.Progress{Fraction: 0, Message: fmt.Sprintf("testing the endpoints: good %d, bad %d", good, bad)}
	if isBad, err := test(good); err != nil {
		return nil, err
	} else if isBad {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("demo: commit %d was given as good but tests bad; the culprit is at or before it: start from an older good commit", good), "BadEndpoints", nil)
	}
	if isBad, err := test(bad); err != nil {
		return nil, err
	} else if !isBad {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("demo: commit %d was given as bad but tests good; the culprit is after it: give a later bad commit", bad), "BadEndpoints", nil)
	}
	total := bad - good
	for bad-good > 1 {
		mid := good + (bad-good)/2
		*progress = workflows.Progress{
			Fraction: Fraction(total, bad-good),
			Message:  fmt.Sprintf("testing commit %d: %d candidates left in (%d, %d]", mid, bad-good, good, bad),
		}
		isBad, err := test(mid)
		if err != nil {
			return nil, err
		}
		if isBad {
			bad = mid
		} else {
			good = mid
		}
	}
	res.Culprit = bad
	*progress = workflows.Progress{Fraction: 1, Message: fmt.Sprintf("found the culprit: commit %d, after %d tests", bad, res.Steps)}
	return res, nil
}

// Fraction is how far a bisection of total candidates is when left remain:
// the share of the log2(total) halvings done, 0 at the start, 1 at the end.
func Fraction(total, left int64) float64 {
	if total <= 1 || left <= 1 {
		return 1
	}
	return 1 - math.Log2(float64(left))/math.Log2(float64(total))
}

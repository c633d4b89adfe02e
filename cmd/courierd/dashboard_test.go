package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/client"
	"github.com/courierq/courier/internal/testenv"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// chromiumPath is Debian's chromium (apt-get install -y chromium), or
// $COURIER_CHROMIUM.
func chromiumPath(t *testing.T) string {
	p := os.Getenv("COURIER_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(p); err != nil {
		testenv.Missing(t, "headless Chromium at "+p+" (apt-get install -y chromium)", err)
	}
	return p
}

// pageWatch counts what the pages did that the test cannot see in the DOM.
type pageWatch struct {
	dialogs atomic.Int64 // confirm() dialogs opened (and accepted)
	mu      sync.Mutex
	csp     []string // Content-Security-Policy violations reported
}

func (w *pageWatch) violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.csp...)
}

// browser starts headless Chromium for the test. It accepts every confirm()
// and fails the test, at its end, for each Content-Security-Policy
// violation a page reported (e.g. inline script the policy blocked).
func browser(t *testing.T) (context.Context, *pageWatch) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 120*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	w := &pageWatch{}
	// Accept the confirm() of the cancel button.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			w.dialogs.Add(1)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	entries := chromedp.Events(ctx, log.EntryAdded)
	go func() {
		for e, err := range entries {
			if err != nil {
				return
			}
			if e.Entry != nil && strings.Contains(e.Entry.Text, "Content Security Policy") {
				w.mu.Lock()
				w.csp = append(w.csp, e.Entry.Text)
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		for _, v := range w.violations() {
			t.Errorf("Content-Security-Policy violation: %s", v)
		}
	})
	return ctx, w
}

// artifact saves a screenshot under testdata/artifacts (gitignored).
func artifact(t *testing.T, name string, png []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, t.Name()+"-"+name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", p, len(png))
}

// TestDashboardInChromium drives the dashboard in headless Chromium: jobs
// enqueued over gRPC appear on the open jobs page and finish there live, the
// overview counts them, a job page shows the result as JSON, and the cancel
// button cancels a running job (checked over gRPC). Each view is saved as a
// screenshot.
func TestDashboardInChromium(t *testing.T) {
	ctx, watch := browser(t)
	st := startCourierd(t, demoConfig(t))
	base := "http://" + st.HTTPAddr()
	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	jc := courierv1.NewJobServiceClient(conn)

	css := func(sel string, args ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(sel, args...)) }
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs"), chromedp.WaitVisible(css("#jobs"))); err != nil {
		t.Fatalf("opening /jobs: %v", err)
	}
	// Enqueued after the page loaded: they must appear, and finish, live.
	var echoIDs []string
	for i := range 3 {
		a, _ := anypb.New(&demov1.Echo{Message: fmt.Sprint("hello from the browser test ", i)})
		echoIDs = append(echoIDs, enqueue(t, jc, a, "").JobId)
	}
	long, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(time.Hour)})
	sleepID := enqueue(t, jc, long, "").JobId
	for _, id := range echoIDs {
		if err := chromedp.Do(ctx, chromedp.WaitVisible(css(`#jobs tr[data-id=%q][data-state="SUCCEEDED"]`, id))); err != nil {
			t.Fatalf("job %s did not show as SUCCEEDED on the live jobs page: %v", id, err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(`#jobs tr[data-id=%q][data-state="RUNNING"]`, sleepID))); err != nil {
		t.Fatalf("sleep job %s not RUNNING on the jobs page: %v", sleepID, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	artifact(t, "jobs", shot)

	// Filters: state=SUCCEEDED lists the echoes only.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs?state=SUCCEEDED"), chromedp.WaitVisible(css("#jobs"))); err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#jobs tbody tr[data-id]").length`))
	if err != nil {
		t.Fatal(err)
	}
	if rows != 3 {
		t.Errorf("jobs?state=SUCCEEDED shows %d rows, want 3", rows)
	}

	// Overview.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	echoRow, err := chromedp.Run(ctx, chromedp.Text(css(`#overview tr[data-type="courier.demo.v1.Echo"]`)))
	if err != nil {
		t.Fatalf("overview: %v", err)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	artifact(t, "overview", shot)
	if f := strings.Fields(echoRow); len(f) < 4 || f[3] != "3" { // type, QUEUED, RUNNING, SUCCEEDED…
		t.Errorf("overview Echo row %q, want SUCCEEDED 3", echoRow)
	}
	total, err := chromedp.Run(ctx, chromedp.Text(css(`#overview tr[data-type="courier.demo.v1.Echo"] .chart-total`)))
	if err != nil || total != "3" {
		t.Errorf("overview chart total for Echo %q (%v), want 3 ended in the last 15 minutes", total, err)
	}

	// Job page: result as JSON.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs/"+echoIDs[0])); err != nil {
		t.Fatal(err)
	}
	result, err := chromedp.Run(ctx, chromedp.Text(css("#result")))
	if err != nil {
		t.Fatalf("job page: %v", err)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	artifact(t, "job", shot)
	if !strings.Contains(result, `"message": "hello from the browser test 0"`) {
		t.Errorf("job page result %q, want the EchoResult as JSON", result)
	}

	// Cancel the running sleep with the button (dev mode: allowed).
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs/"+sleepID),
		chromedp.WaitVisible(css(`#job[data-state="RUNNING"]`)),
		chromedp.Click(css(`#cancel`)),
		chromedp.WaitVisible(css(`#job[data-state="CANCELLED"]`))); err != nil {
		t.Fatalf("cancel from the job page: %v", err)
	}
	// live.js asked first (the form posts only once confirm() is accepted).
	if n := watch.dialogs.Load(); n != 1 {
		t.Errorf("the cancel button opened %d confirm dialogs, want 1", n)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	artifact(t, "cancelled", shot)
	j, err := jc.GetJob(context.Background(), &courierv1.GetJobRequest{Id: sleepID})
	if err != nil || j.State != courierv1.State_CANCELLED {
		t.Fatalf("GetJob after the cancel button: %v %v, want CANCELLED", j.GetState(), err)
	}

	// On a phone: the jobs list fits the width (tables scroll inside it).
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 390, Height: 844, DeviceScaleFactor: 2, Mobile: true}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs"), chromedp.WaitVisible(css("#jobs"))); err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Error("on a 390px phone the jobs page scrolls sideways")
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	artifact(t, "jobs-phone", shot)
}

// TestDashboardReenqueuesADeadLetter: a Sleep job that fails its first
// attempt dead-letters under maxAttempts 1; courierd restarts with
// maxAttempts 3 (the fix), and the job page's re-enqueue button makes a new
// job that the browser sees succeed live, on its second attempt.
func TestDashboardReenqueuesADeadLetter(t *testing.T) {
	ctx, watch := browser(t)
	dbPath := filepath.Join(t.TempDir(), "jobs.db")
	config := func(maxAttempts int) string {
		return fmt.Sprintf("pubsub:\n  emulator: embedded\nstore:\n  path: %s\nhandlers:\n  demo: true\n  types:\n    courier.demo.v1.Sleep: {maxAttempts: %d, minBackoff: 0s, maxBackoff: 1s}\n", dbPath, maxAttempts)
	}
	var failedID string
	t.Run("fail", func(t *testing.T) {
		st := startCourierd(t, config(1))
		conn, err := client.Dial(st.GRPCAddr(), client.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		jc := courierv1.NewJobServiceClient(conn)
		a, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(0), FailAttempts: 1})
		failedID = enqueue(t, jc, a, "").JobId
		if j, _ := watchUntilDone(t, jc, failedID); j.State != courierv1.State_FAILED {
			t.Fatalf("job %s ended %v, want FAILED", failedID, j.State)
		}
	})
	if failedID == "" || t.Failed() {
		t.FailNow()
	}

	st := startCourierd(t, config(3))
	base := "http://" + st.HTTPAddr()
	css := func(sel string, args ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(sel, args...)) }
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(css(`#overview tr[data-type="courier.demo.v1.Sleep"] .reenqueue-all`))); err != nil {
		t.Fatalf("overview offers no re-enqueue for the failed Sleep job: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	artifact(t, "overview-failed", shot)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs/"+failedID),
		chromedp.WaitVisible(css(`#job[data-state="FAILED"]`)),
		chromedp.Click(css(`#reenqueue`)),
		chromedp.WaitVisible(css(`#job[data-state="SUCCEEDED"]`))); err != nil {
		t.Fatalf("re-enqueue from the failed job's page: %v", err)
	}
	if n := watch.dialogs.Load(); n != 1 {
		t.Errorf("the re-enqueue button opened %d confirm dialogs, want 1", n)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	artifact(t, "reenqueued", shot)
	loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`))
	if err != nil {
		t.Fatal(err)
	}
	newID := strings.TrimPrefix(loc, "/jobs/")
	if newID == failedID || newID == "" {
		t.Fatalf("after re-enqueue the browser is at %q, want the new job's page", loc)
	}
	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	j, err := courierv1.NewJobServiceClient(conn).GetJob(context.Background(), &courierv1.GetJobRequest{Id: newID})
	if err != nil || j.State != courierv1.State_SUCCEEDED || j.Attempt != 2 || j.Labels["reenqueued-from"] != failedID {
		t.Fatalf("re-enqueued job %v (%v): want SUCCEEDED on attempt 2, labelled reenqueued-from=%s", j, err, failedID)
	}

	// The timelines: the new job's retry and success, the old job's failure.
	timeline := func(id string) string {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs/"+id), chromedp.WaitVisible(css("#timeline"))); err != nil {
			t.Fatalf("job page %s: %v", id, err)
		}
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`[...document.querySelectorAll("#timeline tr.event")].map(r => r.dataset.state + "/" + r.dataset.attempt).join(" ")`))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got, want := timeline(newID), "QUEUED/0 RUNNING/1 QUEUED/1 RUNNING/2 SUCCEEDED/2"; got != want {
		t.Errorf("timeline of the re-enqueued job = %q, want %q", got, want)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	artifact(t, "timeline", shot)
	retryMsg, err := chromedp.Run(ctx, chromedp.Text(css(`#timeline tr.event:nth-child(3) td:nth-child(4)`)))
	if err != nil || retryMsg == "" {
		t.Errorf("timeline retry row shows no error message (%q, %v)", retryMsg, err)
	}
	if got, want := timeline(failedID), "QUEUED/0 RUNNING/1 FAILED/1"; got != want {
		t.Errorf("timeline of the dead-lettered job = %q, want %q", got, want)
	}
}

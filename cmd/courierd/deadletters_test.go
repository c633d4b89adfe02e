package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// awaitJobState waits, by store notifications, until job id is in state.
func awaitJobState(t *testing.T, st *courier.Node, id string, want jobs.State) *jobs.Job {
	t.Helper()
	changed, cancel := st.Store().Subscribe(id)
	defer cancel()
	timeout := time.After(60 * time.Second)
	for {
		if j, err := st.Store().Get(context.Background(), id); err == nil && j.State == want {
			return j
		}
		select {
		case <-changed:
		case <-timeout:
			j, err := st.Store().Get(context.Background(), id)
			t.Fatalf("job %s not %s in 60s: %+v, %v", id, want, j, err)
		}
	}
}

// noRedirect is an HTTP client that shows redirects instead of following
// them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	r, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// httpPost posts a dashboard form and returns where it redirects.
func httpPost(t *testing.T, u string) *url.URL {
	t.Helper()
	r, err := noRedirect.Post(u, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST %s: %d, want 303; body %s", u, r.StatusCode, b)
	}
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

var dlRow = regexp.MustCompile(`(?s)<tr data-id="([^"]+)" data-job="([^"]*)" data-type="([^"]*)"><td><a class="inspect" href="([^"]+)">.*?<td class="num">([^<]*)</td>\s*<td class="reason">([^<]*)</td>`)

type dlListed struct{ msgID, job, typ, href, attempt, reason string }

func listDeadLetters(t *testing.T, base string) map[string]dlListed {
	t.Helper()
	code, body := httpGet(t, base+"/dead-letters")
	if code != 200 {
		t.Fatalf("GET /dead-letters: %d %s", code, body)
	}
	out := map[string]dlListed{}
	for _, m := range dlRow.FindAllStringSubmatch(body, -1) {
		out[m[2]] = dlListed{msgID: m[1], job: m[2], typ: m[3], href: m[4], attempt: m[5], reason: m[6]}
	}
	return out
}

// TestDashboardDeadLetters: two Sleep jobs fail for good under maxAttempts
// 1, and a poison message (undecodable data) is dead-lettered. After a
// restart with maxAttempts 3 (Pub/Sub state kept in the emulator's data
// dir), the dead-letters page lists all three with type, job, attempt and
// reason; inspecting shows a payload as JSON, and the poison one as hex;
// re-enqueueing one makes a new job that succeeds and removes its dead
// letter; re-enqueueing all of the type re-enqueues the other failed job and
// keeps the poison message (EnqueueJob refuses it), saying so.
func TestDashboardDeadLetters(t *testing.T) {
	dir := t.TempDir()
	config := func(maxAttempts int) string {
		return fmt.Sprintf("pubsub:\n  emulator: embedded\n  emulatorDataDir: %s\nstore:\n  path: %s\nhandlers:\n  demo: true\n  types:\n    courier.demo.v1.Sleep: {maxAttempts: %d, minBackoff: 0s, maxBackoff: 1s}\n",
			filepath.Join(dir, "pubsub"), filepath.Join(dir, "jobs.db"), maxAttempts)
	}
	var failedA, failedB string
	const poisonID = "poison-1"
	t.Run("fail", func(t *testing.T) {
		st := startCourierd(t, config(1))
		conn, err := client.Dial(st.GRPCAddr(), client.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		jc := courierv1.NewJobServiceClient(conn)
		for _, id := range []*string{&failedA, &failedB} {
			a, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(0), FailAttempts: 1})
			*id = enqueue(t, jc, a, "").JobId
			if j, _ := watchUntilDone(t, jc, *id); j.State != courierv1.State_FAILED {
				t.Fatalf("job %s ended %v, want FAILED", *id, j.State)
			}
		}
		raw := st.PubSub().Publisher("courier-demo-v1-Sleep")
		defer raw.Stop()
		if _, err := raw.Publish(context.Background(), &pubsub.Message{Data: []byte{0xff, 0xff, 0xff}, Attributes: map[string]string{
			"ce-specversion": "1.0", "ce-id": poisonID, "ce-type": "courier.demo.v1.Sleep", "ce-source": "test", "content-type": "application/protobuf",
		}}).Get(context.Background()); err != nil {
			t.Fatal(err)
		}
		// The dead letter is published before the job is recorded FAILED.
		awaitJobState(t, st, poisonID, jobs.Failed)
	})
	if failedB == "" || t.Failed() {
		t.FailNow()
	}

	st := startCourierd(t, config(3))
	base := "http://" + st.HTTPAddr()
	listed := listDeadLetters(t, base)
	if len(listed) != 3 {
		_, body := httpGet(t, base+"/dead-letters")
		t.Fatalf("dead letters listed %+v, want 3 (jobs %s, %s and %s); page:\n%s", listed, failedA, failedB, poisonID, body)
	}
	for _, id := range []string{failedA, failedB} {
		l := listed[id]
		if l.typ != "courier.demo.v1.Sleep" || l.attempt != "1" || !strings.Contains(l.reason, "attempt 1 of 1 failed") {
			t.Errorf("dead letter of job %s listed as %+v, want Sleep, attempt 1, the reason", id, l)
		}
	}
	if l := listed[poisonID]; l.typ != "courier.demo.v1.Sleep" || l.attempt != "—" || !strings.Contains(l.reason, "cannot decode") {
		t.Errorf("poison dead letter listed as %+v", l)
	}
	// Listing leaves them in place.
	if again := listDeadLetters(t, base); len(again) != 3 {
		t.Fatalf("second listing %+v, want the same 3", again)
	}

	// Inspect: JSON when it decodes, hex when it does not.
	if code, body := httpGet(t, base+listed[failedA].href); code != 200 || !strings.Contains(body, `&#34;failAttempts&#34;: 1`) || !strings.Contains(body, `id="reenqueue"`) {
		t.Errorf("inspecting %s: %d\n%s", listed[failedA].href, code, body)
	}
	if code, body := httpGet(t, base+listed[poisonID].href); code != 200 || !strings.Contains(body, `id="payload-hex"`) || !strings.Contains(body, "ff ff ff") {
		t.Errorf("inspecting the poison message %s: %d\n%s", listed[poisonID].href, code, body)
	}

	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jc := courierv1.NewJobServiceClient(conn)
	succeeded := func(newID, from string) {
		t.Helper()
		j, _ := watchUntilDone(t, jc, newID)
		if j.State != courierv1.State_SUCCEEDED || j.Attempt != 2 || j.Labels["reenqueued-from"] != from {
			t.Fatalf("re-enqueued job %v: want SUCCEEDED on attempt 2, labelled reenqueued-from=%s", j, from)
		}
	}

	// Re-enqueue one: to the new job's page; it succeeds; its letter is gone.
	loc := httpPost(t, base+listed[failedA].href+"/reenqueue")
	newA, ok := strings.CutPrefix(loc.Path, "/jobs/")
	if !ok || newA == failedA {
		t.Fatalf("re-enqueue redirected to %s, want the new job's page", loc)
	}
	succeeded(newA, failedA)
	if after := listDeadLetters(t, base); len(after) != 2 || after[failedA].msgID != "" {
		t.Fatalf("after re-enqueueing %s: dead letters %+v, want the other 2", failedA, after)
	}

	// Re-enqueue the poison one: refused by EnqueueJob, and it stays.
	loc = httpPost(t, base+listed[poisonID].href+"/reenqueue")
	if !strings.Contains(loc.Query().Get("flash"), "re-enqueue failed") {
		t.Errorf("re-enqueue of the poison message redirected to %s, want a failure flash", loc)
	}

	// Re-enqueue all of the type: B is re-enqueued, the poison one is not.
	loc = httpPost(t, base+"/dead-letters/types/courier.demo.v1.Sleep/reenqueue")
	if f := loc.Query().Get("flash"); !strings.Contains(f, "re-enqueued 1 dead letters") || !strings.Contains(f, "1 failed") {
		t.Errorf("re-enqueue all: flash %q, want 1 re-enqueued and 1 failed", f)
	}
	js, _, err := st.Store().List(context.Background(), jobs.ListParams{Labels: map[string]string{"reenqueued-from": failedB}})
	if err != nil || len(js) != 1 {
		t.Fatalf("jobs re-enqueued from %s: %v, %v; want 1", failedB, js, err)
	}
	succeeded(js[0].ID, failedB)
	if after := listDeadLetters(t, base); len(after) != 1 || after[poisonID].msgID == "" {
		t.Fatalf("after re-enqueue all: dead letters %+v, want only the poison message", after)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// TestMain runs the CLI itself when a test starts this binary as a child
// (COURIER_CLI_CHILD=1), so that tests can run it in a fresh process, under
// a pseudo-terminal or with its output redirected. Otherwise it runs the
// tests, away from the developer's COURIER_* settings and profile file.
func TestMain(m *testing.M) {
	if os.Getenv("COURIER_CLI_CHILD") == "1" {
		main()
		os.Exit(0)
	}
	for _, k := range []string{"COURIER_ADDR", "COURIER_TOKEN", "COURIER_PROFILE", "COURIER_CONFIG"} {
		os.Unsetenv(k)
	}
	dir, err := os.MkdirTemp("", "courier-cli-test")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", dir) // no profile file unless a test writes one
	os.Setenv("HOME", dir)
	defer os.RemoveAll(dir)
	testenv.Main(m)
}

// server runs a JobService on a real SQLite store; tests move jobs through
// the store as a worker would.
func server(t *testing.T) (addr string, store jobs.Store) {
	t.Helper()
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	addr, _ = testenv.JobService(t, store, jobservice.TypeMap{"courier.demo.v1.Echo": {MaxAttempts: 3}})
	return addr, store
}

func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, args, &out, &errb)
	return out.String() + errb.String(), err
}

func TestEnqueueGetListCancel(t *testing.T) {
	addr, _ := server(t)
	out, err := cli(t, "--addr", addr, "enqueue", "courier.demo.v1.Echo", `{"message":"hi"}`, "--key", "k1", "--label", "team=a")
	if err != nil {
		t.Fatal(out, err)
	}
	id := strings.TrimSpace(out)
	out, err = cli(t, "enqueue", "--addr", addr, "courier.demo.v1.Echo", `{"message":"hi"}`, "--key", "k1")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "duplicate") {
		t.Fatalf("second enqueue with the same key: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "get", id)
	if err != nil || !strings.Contains(out, "QUEUED") || !strings.Contains(out, `{"message":"hi"}`) || !strings.Contains(out, "team=a") {
		t.Fatalf("get: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "-o", "json", "get", id)
	var j courierv1.Job
	if err != nil || protojson.Unmarshal([]byte(out), &j) != nil || j.Id != id {
		t.Fatalf("get -o json: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "list", "--state", "queued")
	if err != nil || !strings.Contains(out, id) {
		t.Fatalf("list: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "stats")
	if err != nil || !regexp.MustCompile(`(?m)^\s*courier\.demo\.v1\.Echo\s+1\s+0\s+0\s+0\s+0\s+\d{4}-`).MatchString(out) {
		t.Fatalf("stats with one queued Echo: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "cancel", id)
	if err != nil || !strings.Contains(out, "CANCELLED") {
		t.Fatalf("cancel: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "-o", "json", "stats", "--type", "courier.demo.v1.Echo")
	var counts courierv1.CountJobsResponse
	if err != nil || protojson.Unmarshal([]byte(out), &counts) != nil || len(counts.Types) != 1 || counts.Types[0].Cancelled != 1 || counts.Types[0].Queued != 0 || counts.Types[0].OldestQueuedTime != nil {
		t.Fatalf("stats -o json after the cancel: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "cancel", id)
	if err == nil || !strings.Contains(err.Error(), "FailedPrecondition") {
		t.Fatalf("cancel again: %q %v", out, err)
	}
}

// TestWaitExitCodes: enqueue --wait prints the result and exits 0 on
// success, 3 on failure.
func TestWaitExitCodes(t *testing.T) {
	addr, store := server(t)
	for _, tc := range []struct {
		name    string
		succeed bool
		want    error
	}{{"succeeds", true, nil}, {"fails", false, exitError{3}}} {
		t.Run(tc.name, func(t *testing.T) {
			// The CLI's first line names the job it enqueued (ID QUEUED ...).
			pr, pw := io.Pipe()
			done := make(chan struct{})
			var rest bytes.Buffer
			var err error
			go func() {
				defer close(done)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err = run(ctx, []string{"--addr", addr, "enqueue", "courier.demo.v1.Echo", `{"message":"` + tc.name + `"}`, "--wait"}, pw, io.Discard)
				pw.Close()
			}()
			first, rerr := bufio.NewReader(pr).ReadString('\n')
			if rerr != nil {
				t.Fatal(rerr)
			}
			id, _, _ := strings.Cut(first, " ")
			copied := make(chan struct{})
			go func() { io.Copy(&rest, pr); close(copied) }()
			// Act as the worker on the job the CLI enqueued.
			ctx := context.Background()
			if _, err := store.Start(ctx, jobs.StartParams{ID: id, Attempt: 1, Lease: "test", LeaseFor: time.Minute}); err != nil {
				t.Fatal(err)
			}
			if tc.succeed {
				res, _ := proto.Marshal(&demov1.EchoResult{Message: "done " + tc.name})
				if _, err := store.Succeed(ctx, jobs.SucceedParams{ID: id, ResultType: "courier.demo.v1.EchoResult", Result: res}); err != nil {
					t.Fatal(err)
				}
			} else if _, err := store.Fail(ctx, jobs.FailParams{ID: id, Code: 9, Message: "it broke"}); err != nil {
				t.Fatal(err)
			}
			<-done
			<-copied
			out := first + rest.String()
			if !errors.Is(err, tc.want) && err != tc.want {
				t.Fatalf("exit: %v, want %v; output:\n%s", err, tc.want, out)
			}
			want := `"done succeeds"`
			if !tc.succeed {
				want = "it broke"
			}
			if !strings.Contains(out, want) {
				t.Fatalf("output lacks %q:\n%s", want, out)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	addr, _ := server(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"--addr", addr, "enqueue", "no.such.Type", "{}"}, `unknown message type "no.such.Type": courierd at ` + addr + " does not know it"},
		{[]string{"--addr", addr, "enqueue", "courier.demo.v1.Echo", "{bad"}, "not a valid courier.demo.v1.Echo"},
		{[]string{"--addr", "127.0.0.1:1", "enqueue", "courier.demo.v1.Echo", "{}"}, "is it running?"},
		{[]string{"get"}, "get takes one job ID, and got 0 arguments"},
		{[]string{"enqueue", "courier.demo.v1.Echo"}, "enqueue takes TYPE and JSON"},
		{[]string{"list", "extra"}, "list takes no arguments"},
		{[]string{"-o", "xml", "get", "x"}, "text and json"},
		{[]string{"list", "--state", "done"}, "QUEUED, RUNNING"},
		{[]string{"--addr", "127.0.0.1:1", "get", "x"}, "is it running?"},
		{[]string{"--addr", "10.0.0.1:8005", "get", "x"}, "TLS"},
		{[]string{"--cert-file", "c.pem", "get", "x"}, "both a client certificate and its key"},
		{[]string{"--profile", "prod", "get", "x"}, `profile "prod": there is no profile file`},
	} {
		out, err := cli(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("courier %v: %v (output %q), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	for _, help := range [][]string{{"help"}, {}, {"--help"}} {
		out, err := cli(t, help...)
		if err != nil || !strings.Contains(out, "enqueue TYPE JSON") || !strings.Contains(out, "COURIER_TOKEN") {
			t.Fatalf("courier %v: %q %v", help, out, err)
		}
	}
}

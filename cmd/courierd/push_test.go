package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	"github.com/courierq/courier/wire"
)

const pushSA = "pusher@push-test.iam.gserviceaccount.com"

// front is what Pub/Sub reaches on its way to courierd (Cloud Run's front
// end, say): an HTTP server whose URL is known before courierd starts, so
// that it can be the push endpoint, forwarding to courierd's HTTP port
// once there is one (503 before, which Pub/Sub retries).
type front struct {
	srv    *httptest.Server
	target atomic.Pointer[httputil.ReverseProxy]
}

func newFront(t *testing.T) *front {
	f := &front{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := f.target.Load(); p != nil {
			p.ServeHTTP(w, r)
			return
		}
		http.Error(w, "not yet", http.StatusServiceUnavailable)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *front) to(addr string) {
	f.target.Store(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr}))
}

// pushRegistry registers Echo (counts its runs) and Sleep, which fails for
// good when the payload asks for a permanent failure and retryably while
// its attempt is at most fail_attempts (and counts its attempts).
func pushRegistry(t *testing.T) (*handlers.Registry, func(id string) int) {
	var mu sync.Mutex
	runs := map[string]int{}
	count := func(id string) {
		mu.Lock()
		runs[id]++
		mu.Unlock()
	}
	reg := handlers.NewRegistry()
	if err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		count(job.ID)
		return &demov1.EchoResult{Message: "echo: " + job.Payload.GetMessage()}, nil
	}, handlers.Config{Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
		count(job.ID)
		if job.Payload.GetPermanentFailure() {
			return nil, handlers.Permanent(errors.New("asked to fail for good"))
		}
		if job.Attempt <= int(job.Payload.GetFailAttempts()) {
			return nil, fmt.Errorf("asked to fail attempt %d", job.Attempt)
		}
		return &demov1.SleepResult{}, nil
	}, handlers.Config{Timeout: 10 * time.Second, MaxAttempts: 3, MinBackoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	return reg, func(id string) int { mu.Lock(); defer mu.Unlock(); return runs[id] }
}

func workerSub(t *testing.T, typ string) (topic, sub, deadLetterSub string) {
	topic, err := wire.Naming{}.Topic(typ)
	if err != nil {
		t.Fatal(err)
	}
	return topic, topic + "-worker", topic + "-dead-letter"
}

// TestPushFromEmulator: courier's emulator pushes to courierd (worker.mode:
// push), with OIDC tokens of its own that courierd checks against the
// emulator's key set: jobs succeed and run once; a failing job is retried
// (500s) and on its last attempt dead-lettered and FAILED (204); a
// permanent failure at once. courierd made the worker subscriptions push
// to its endpoint, the Echo one from a pull subscription that was there
// first. Both push forms: the JSON envelope, and unwrapped with the
// attributes in headers.
func TestPushFromEmulator(t *testing.T) {
	emu, err := emulator.Start(context.Background(), emulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	for _, unwrapped := range []bool{false, true} {
		t.Run(fmt.Sprintf("unwrapped=%v", unwrapped), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			project := fmt.Sprintf("push-%v", unwrapped)
			c, err := pubsub.NewClient(ctx, project, emu.ClientOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			echoTopic, echoSub, _ := workerSub(t, "courier.demo.v1.Echo")
			_, sleepSub, sleepDead := workerSub(t, "courier.demo.v1.Sleep")
			// A pull subscription from before: courierd turns it into push.
			topicName := "projects/" + project + "/topics/" + echoTopic
			if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topicName}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: "projects/" + project + "/subscriptions/" + echoSub, Topic: topicName}); err != nil {
				t.Fatal(err)
			}

			f := newFront(t)
			endpoint := f.srv.URL + "/pubsub/push"
			reg, runs := pushRegistry(t)
			doc := fmt.Sprintf("grpc: {addr: 127.0.0.1:0, devMode: true}\nhttp: {addr: 127.0.0.1:0}\npubsub: {project: %s}\nstore: {path: %s}\n"+
				"worker:\n  mode: push\n  push:\n    endpoint: %s\n    serviceAccount: %s\n    jwksURL: %s\n    unwrapped: %v\n",
				project, filepath.Join(t.TempDir(), "jobs.db"), endpoint, pushSA, emu.JWKSURL, unwrapped)
			node := startCourierdDoc(t, doc, courier.WithPubSubClient(c), courier.WithRegistry(reg))
			f.to(node.HTTPAddr())

			for _, sub := range []string{echoSub, sleepSub} {
				s, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: "projects/" + project + "/subscriptions/" + sub})
				if err != nil {
					t.Fatal(err)
				}
				pc := s.GetPushConfig()
				if pc.GetPushEndpoint() != endpoint || pc.GetOidcToken().GetServiceAccountEmail() != pushSA || (pc.GetNoWrapper() != nil) != unwrapped ||
					s.GetDeadLetterPolicy().GetMaxDeliveryAttempts() != 100 {
					t.Fatalf("subscription %s: push config %v, dead letters after %d deliveries; want a push to %s with tokens of %s (unwrapped %v), 100",
						sub, pc, s.GetDeadLetterPolicy().GetMaxDeliveryAttempts(), endpoint, pushSA, unwrapped)
				}
			}

			conn, err := client.Dial(node.GRPCAddr(), client.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			jc := client.NewJobs(conn)
			enqueue := func(msg proto.Message) string {
				id, err := jc.Enqueue(ctx, msg, client.EnqueueOptions{Labels: map[string]string{"team": "push"}})
				if err != nil {
					t.Fatal(err)
				}
				return id
			}
			var ids []string
			for i := range 10 {
				ids = append(ids, enqueue(&demov1.Echo{Message: fmt.Sprint(i)}))
			}
			for i, id := range ids {
				var res demov1.EchoResult
				job, err := jc.Wait(ctx, id, &res)
				if err != nil {
					t.Fatalf("job %s: %v", id, err)
				}
				if res.GetMessage() != fmt.Sprintf("echo: %d", i) || job.GetAttempt() != 1 || job.GetLabels()["team"] != "push" || runs(id) != 1 {
					t.Fatalf("job %s: result %q, attempt %d, labels %v, ran %d times; want the echo, attempt 1, the label, one run", id, res.GetMessage(), job.GetAttempt(), job.GetLabels(), runs(id))
				}
			}

			retried := enqueue(&demov1.Sleep{FailAttempts: 99})
			permanent := enqueue(&demov1.Sleep{PermanentFailure: true})
			recovered := enqueue(&demov1.Sleep{FailAttempts: 1})
			for _, tc := range []struct {
				id       string
				state    courierv1.State
				attempts int
			}{{retried, courierv1.State_FAILED, 3}, {permanent, courierv1.State_FAILED, 1}, {recovered, courierv1.State_SUCCEEDED, 2}} {
				job, _ := jc.Wait(ctx, tc.id, nil)
				if job.GetState() != tc.state || int(job.GetAttempt()) != tc.attempts || runs(tc.id) != tc.attempts {
					t.Fatalf("job %s: %v after attempt %d (%d runs), want %v after %d", tc.id, job.GetState(), job.GetAttempt(), runs(tc.id), tc.state, tc.attempts)
				}
			}
			reasons := map[string]string{}
			for _, m := range testenv.Pull(ctx, t, c, sleepDead, 2) {
				reasons[m.Attributes[wire.AttrID]] = m.Attributes[ingest.AttrDeadLetterReason]
			}
			if !strings.Contains(reasons[retried], "attempt 3 of 3 failed") || !strings.Contains(reasons[permanent], "permanent failure on attempt 1") {
				t.Fatalf("dead letters: %q, want job %s after attempt 3 of 3 and job %s's permanent failure", reasons, retried, permanent)
			}
		})
	}
}

// signer is a key the test makes, served from a local JWKS.
type signer struct {
	kid string
	key *rsa.PrivateKey
}

func newSigner(t *testing.T, kid string) signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, key: k}
}

func (s signer) token(t *testing.T, edit func(c map[string]any)) string {
	now := time.Now()
	c := map[string]any{
		"iss": "https://accounts.google.com", "aud": pushEndpoint, "sub": "1", "email": pushSA, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pushEndpoint is where the subscriptions of TestPushRequests push (nothing
// is published to them): the audience of the tokens. The test posts to
// courierd's own address.
const pushEndpoint = "https://courier-worker.test/pubsub/push"

// TestPushRequests posts push requests to courierd as Pub/Sub would, with
// tokens signed by a key of the test's, served from a local JWKS over
// HTTP: a bad signature, an expired token, another audience, another
// service account or no token is refused (401) and runs nothing; good
// ones run (204), in the envelope and unwrapped; a redelivery of a job
// that ended is acked without running; over a concurrency or rate limit
// the answer is 429 at once, and it spends none of the job's attempts.
func TestPushRequests(t *testing.T) {
	key, forger := newSigner(t, "test-key"), newSigner(t, "test-key")
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.key.PublicKey, KeyID: key.kid, Algorithm: "RS256", Use: "sig"}}})
	}))
	defer jwks.Close()

	var mu sync.Mutex
	runs := map[string]int{}
	count := func(id string) int { mu.Lock(); defer mu.Unlock(); return runs[id] }
	started, release := make(chan string, 1), make(chan struct{})
	reg := handlers.NewRegistry()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		mu.Lock()
		runs[job.ID]++
		mu.Unlock()
		return &demov1.EchoResult{Message: job.Payload.GetMessage()}, nil
	}, handlers.Config{Timeout: 10 * time.Second}))
	must(handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
		if job.Payload.GetFailAttempts() > 0 { // "block": hold the only slot until released
			started <- job.ID
			<-release
		}
		return &demov1.SleepResult{}, nil
	}, handlers.Config{Timeout: 10 * time.Second, Concurrency: 1}))
	must(handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.EchoResult]) (*demov1.EchoResult, error) {
		return job.Payload, nil
	}, handlers.Config{Timeout: 10 * time.Second, RatePerSecond: 0.001, Burst: 1}))

	c, _ := inProcessPubSub(t, "push-requests")
	doc := fmt.Sprintf("grpc: {addr: 127.0.0.1:0, devMode: true}\nhttp: {addr: 127.0.0.1:0}\npubsub: {project: push-requests}\nstore: {path: %s}\n"+
		"worker:\n  mode: push\n  push: {endpoint: %q, serviceAccount: %s, jwksURL: %q}\n",
		filepath.Join(t.TempDir(), "jobs.db"), pushEndpoint, pushSA, jwks.URL)
	node := startCourierdDoc(t, doc, courier.WithPubSubClient(c), courier.WithRegistry(reg))
	post := "http://" + node.HTTPAddr() + "/pubsub/push"
	sub := func(typ string) string {
		_, s, _ := workerSub(t, typ)
		return "projects/push-requests/subscriptions/" + s
	}

	envelope := func(id string, msg proto.Message, deliveryAttempt int) []byte {
		data, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		typ := string(msg.ProtoReflect().Descriptor().FullName())
		b, _ := json.Marshal(map[string]any{
			"message": map[string]any{
				"attributes": map[string]string{wire.AttrID: id, wire.AttrType: typ, "courier-label-team": "push"},
				"data":       base64.StdEncoding.EncodeToString(data), "messageId": "m-" + id, "message_id": "m-" + id,
				"publishTime": time.Now().UTC().Format(time.RFC3339Nano),
			},
			"subscription": sub(typ), "deliveryAttempt": deliveryAttempt,
		})
		return b
	}
	send := func(body []byte, token string, hdr http.Header) (int, http.Header) {
		req, err := http.NewRequest(http.MethodPost, post, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, res.Header
	}
	ctx := context.Background()
	stored := func(id string) *jobs.Job {
		job, err := node.Store().Get(ctx, id)
		if errors.Is(err, jobs.ErrNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return job
	}

	for _, tc := range []struct{ name, token string }{
		{"no token", ""},
		{"bad signature", forger.token(t, nil)},
		{"expired", key.token(t, func(c map[string]any) {
			c["iat"], c["exp"] = time.Now().Add(-3*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix()
		})},
		{"wrong audience", key.token(t, func(c map[string]any) { c["aud"] = "https://elsewhere.test/pubsub/push" })},
		{"another service account", key.token(t, func(c map[string]any) { c["email"] = "someone@gmail.com" })},
	} {
		id := "refused-" + strings.ReplaceAll(tc.name, " ", "-")
		if code, _ := send(envelope(id, &demov1.Echo{Message: "x"}, 1), tc.token, nil); code != http.StatusUnauthorized {
			t.Errorf("%s: answered %d, want 401", tc.name, code)
		}
		if job := stored(id); job != nil || count(id) != 0 {
			t.Errorf("%s: job recorded %v and run %d times, want neither", tc.name, job, count(id))
		}
	}

	good := key.token(t, nil)
	if code, _ := send(envelope("wrapped", &demov1.Echo{Message: "hi"}, 1), good, nil); code != http.StatusNoContent {
		t.Fatalf("a good wrapped push: answered %d, want 204", code)
	}
	if job := stored("wrapped"); job == nil || job.State != jobs.Succeeded || job.Labels["team"] != "push" || count("wrapped") != 1 {
		t.Fatalf("job after a good push: %+v, ran %d times", job, count("wrapped"))
	}
	if code, _ := send(envelope("wrapped", &demov1.Echo{Message: "hi"}, 2), good, nil); code != http.StatusNoContent || count("wrapped") != 1 {
		t.Fatalf("a redelivery of an ended job: answered %d and ran it %d times; want 204 and the one run", code, count("wrapped"))
	}

	data, _ := proto.Marshal(&demov1.Echo{Message: "bare"})
	hdr := http.Header{}
	hdr.Set("Ce-Id", "unwrapped")
	hdr.Set("Ce-Type", "courier.demo.v1.Echo")
	hdr.Set("Courier-Label-Team", "push")
	hdr.Set("X-Goog-Pubsub-Message-Id", "m-unwrapped")
	hdr.Set("X-Goog-Pubsub-Subscription-Name", sub("courier.demo.v1.Echo"))
	if code, _ := send(data, good, hdr); code != http.StatusNoContent {
		t.Fatalf("a good unwrapped push: answered %d, want 204", code)
	}
	if job := stored("unwrapped"); job == nil || job.State != jobs.Succeeded || job.Labels["team"] != "push" {
		t.Fatalf("job after an unwrapped push: %+v", job)
	}

	// Concurrency 1: while one Sleep runs, another is answered 429 at
	// once; once the slot frees, its redelivery runs as attempt 1.
	first := make(chan int, 1)
	go func() {
		code, _ := send(envelope("slot-holder", &demov1.Sleep{FailAttempts: 1}, 1), good, nil)
		first <- code
	}()
	<-started
	if code, _ := send(envelope("slot-waiter", &demov1.Sleep{}, 1), good, nil); code != http.StatusTooManyRequests {
		t.Fatalf("over the concurrency limit: answered %d, want 429", code)
	}
	close(release)
	if code := <-first; code != http.StatusNoContent {
		t.Fatalf("the slot holder: answered %d, want 204", code)
	}
	if code, _ := send(envelope("slot-waiter", &demov1.Sleep{}, 2), good, nil); code != http.StatusNoContent {
		t.Fatalf("the redelivery once the slot freed: answered %d, want 204", code)
	}
	if job := stored("slot-waiter"); job.State != jobs.Succeeded || job.Attempt != 1 {
		t.Fatalf("the job refused once with 429: %v on attempt %d, want SUCCEEDED on attempt 1 (a 429 spends no attempt)", job.State, job.Attempt)
	}

	// Rate 0.001/s with burst 1: the first runs, the second is refused
	// with 429 and a Retry-After, and stays QUEUED with no attempt spent.
	if code, _ := send(envelope("rate-1", &demov1.EchoResult{Message: "a"}, 1), good, nil); code != http.StatusNoContent {
		t.Fatalf("the first under the rate limit: answered %d, want 204", code)
	}
	code, h := send(envelope("rate-2", &demov1.EchoResult{Message: "b"}, 1), good, nil)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("over the rate limit: answered %d with Retry-After %q, want 429 with one", code, h.Get("Retry-After"))
	}
	if job := stored("rate-2"); job.State != jobs.Queued || job.Attempt != 0 {
		t.Fatalf("the job refused for its rate: %v, attempt %d; want QUEUED, 0", job.State, job.Attempt)
	}

	for _, tc := range []struct {
		name   string
		body   []byte
		method string
		want   int
	}{
		{"another subscription", bytes.Replace(envelope("other", &demov1.Echo{}, 1), []byte("push-requests/subscriptions"), []byte("elsewhere/subscriptions"), 1), http.MethodPost, http.StatusNotFound},
		{"not an envelope", []byte(`{"hello": "world"}`), http.MethodPost, http.StatusBadRequest},
		{"a GET", nil, http.MethodGet, http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, post, bytes.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+good)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s: answered %d, want %d", tc.name, res.StatusCode, tc.want)
		}
	}
}

// inProcessPubSub starts courier's emulator with no port and a client of
// it in project.
func inProcessPubSub(t *testing.T, project string) (*pubsub.Client, *emulator.Server) {
	emu, err := emulator.Start(context.Background(), emulator.Config{InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pubsub.NewClient(context.Background(), project, emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); emu.Close() })
	return c, emu
}

package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/courierq/courier/handlers"
)

// Push delivery. With Config.Push set, the worker does not pull: Pub/Sub
// POSTs each message to PushConfig.Endpoint, where PushHandler serves, and
// the request is the delivery. It goes through the same steps and the same
// chain as a pulled message; the answer is its ack or nack:
//
//   - 204 acks: the job succeeded, failed for good (dead-lettered, FAILED),
//     was already over, or the message could not run (dead-lettered).
//   - 429: the type's rate or concurrency limit is reached. A push cannot
//     be held while it waits the way a pulled message is (Pub/Sub gives a
//     request the subscription's ack deadline, at most 10 minutes, and a
//     request held open holds an instance), so the limits answer at once
//     and Pub/Sub redelivers after its backoff.
//   - 500: the handler failed and will be retried.
//   - 503: the worker is starting or stopping, or the job store or the
//     dead-letter topic could not be reached.
//   - 400, 404, 413: not a push request of one of this worker's
//     subscriptions; 401: the Authenticator refused it.
//
// Pub/Sub acks on 102, 200, 201, 202 and 204 and nacks on every other
// answer (a 4xx is not "drop it": the message stays and comes back), as on
// no answer within the ack deadline. Nacks slow its pushes down (push
// backoff) and space redeliveries by the subscription's retry policy.
//
// Attempts: a 429 is a delivery in Pub/Sub's count, so a push's attempt is
// the job store's count alone (runs started), never Pub/Sub's
// deliveryAttempt: busy answers do not spend a job's attempts. For the same
// reason the worker subscriptions Run creates in push mode let Pub/Sub
// dead-letter only after maxPushDeliveryAttempts deliveries (its maximum):
// the worker dead-letters at the job's max attempts itself, and the policy
// is the net for a message that keeps killing the process.

// maxPushDeliveryAttempts is the dead-letter policy's max_delivery_attempts
// of push subscriptions: Pub/Sub's maximum.
const maxPushDeliveryAttempts = 100

// maxPushBytes bounds a push request's body: a 10 MB message, base64 in the
// JSON envelope, with its attributes.
const maxPushBytes = 16 << 20

// PushConfig makes a Worker receive by Pub/Sub push instead of pulling.
// Endpoint and Authenticator are required.
type PushConfig struct {
	// Endpoint is the URL Pub/Sub POSTs to (e.g.
	// https://worker-abc-uc.a.run.app/pubsub/push): the push endpoint of
	// the subscriptions Run creates or aligns. Serve PushHandler there.
	Endpoint string
	// ServiceAccountEmail is the service account Pub/Sub signs each push's
	// OIDC token as; Run puts it (and Audience) on the subscriptions. ""
	// makes subscriptions that send no token.
	ServiceAccountEmail string
	// Audience of those tokens. "" means Pub/Sub's default, the Endpoint.
	Audience string
	// Unwrapped makes the subscriptions Run creates deliver the message
	// data as the request body, with attributes and metadata in headers
	// (payload unwrapping with write_metadata), instead of the JSON
	// envelope. The handler takes both either way; the envelope keeps
	// attribute names exactly (headers are case-insensitive, and proxies
	// may drop or rewrite some, such as traceparent).
	Unwrapped bool
	// Authenticator decides whether a request comes from Pub/Sub, before
	// anything else is read: a *pushauth.Verifier, or InsecurePushAuth
	// for tests and local development only.
	Authenticator PushAuthenticator
}

// PushAuthenticator authenticates push requests. An error refuses the
// request (401, which Pub/Sub treats as a nack).
type PushAuthenticator interface {
	AuthenticatePush(r *http.Request) error
}

// InsecurePushAuth accepts every push request, token or not. Anyone who can
// reach the endpoint can then run jobs: use it in tests and dev mode only.
var InsecurePushAuth PushAuthenticator = insecurePushAuth{}

type insecurePushAuth struct{}

func (insecurePushAuth) AuthenticatePush(*http.Request) error { return nil }

func (c *PushConfig) validate() error {
	if c == nil {
		return nil
	}
	if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("ingest: PushConfig.Endpoint %q is not an absolute http(s) URL; give the URL Pub/Sub pushes to, e.g. https://worker-abc-uc.a.run.app/pubsub/push", c.Endpoint)
	}
	if c.Authenticator == nil {
		return errors.New("ingest: PushConfig.Authenticator is nil; pass a *pushauth.Verifier, or ingest.InsecurePushAuth in tests and dev mode")
	}
	return nil
}

// subscription returns the push config of the worker subscriptions.
func (c *PushConfig) subscription() *pubsubpb.PushConfig {
	pc := &pubsubpb.PushConfig{PushEndpoint: c.Endpoint}
	if c.ServiceAccountEmail != "" {
		pc.AuthenticationMethod = &pubsubpb.PushConfig_OidcToken_{OidcToken: &pubsubpb.PushConfig_OidcToken{
			ServiceAccountEmail: c.ServiceAccountEmail, Audience: c.Audience,
		}}
	}
	if c.Unwrapped {
		pc.Wrapper = &pubsubpb.PushConfig_NoWrapper_{NoWrapper: &pubsubpb.PushConfig_NoWrapper{WriteMetadata: true}}
	}
	return pc
}

// samePush reports whether two push configs deliver alike (both pull, or
// push to the same endpoint with the same token and wrapper). Fields the
// service fills in itself (attributes such as x-goog-version) are not
// compared.
func samePush(have, want *pubsubpb.PushConfig) bool {
	if have.GetPushEndpoint() != want.GetPushEndpoint() {
		return false
	}
	if want.GetPushEndpoint() == "" {
		return true
	}
	ho, wo := have.GetOidcToken(), want.GetOidcToken()
	return ho.GetServiceAccountEmail() == wo.GetServiceAccountEmail() && ho.GetAudience() == wo.GetAudience() &&
		(have.GetNoWrapper() != nil) == (want.GetNoWrapper() != nil) && have.GetNoWrapper().GetWriteMetadata() == want.GetNoWrapper().GetWriteMetadata()
}

// describePush says how a push config delivers, for logs.
func describePush(pc *pubsubpb.PushConfig) string {
	if pc.GetPushEndpoint() == "" {
		return "pull"
	}
	s := "push to " + pc.GetPushEndpoint()
	if o := pc.GetOidcToken(); o != nil {
		s += fmt.Sprintf(" with tokens of %s", o.GetServiceAccountEmail())
		if o.GetAudience() != "" {
			s += " for " + o.GetAudience()
		}
	} else {
		s += " without tokens"
	}
	if pc.GetNoWrapper() != nil {
		s += ", unwrapped"
	}
	return s
}

// pushRun is Run in push mode, once the subscriptions are ready: requests
// are admitted until pulling stops (Shutdown, Close, or Run's ctx), then it
// waits for the deliveries in flight.
func (w *Worker) pushRun() error {
	for _, t := range w.types {
		if to := t.entry.Config.Timeout; to == 0 || to >= w.cfg.AckDeadline {
			w.log.Warn("ingest: push: a handler without a timeout below the ack deadline may outlive its push request; Pub/Sub then pushes the message again, and the copy waits for the run to end",
				"type", t.entry.Type, "timeout", to, "ack_deadline", w.cfg.AckDeadline)
		}
	}
	w.log.Info("ingest: receiving by push", "endpoint", w.cfg.Push.Endpoint, "subscriptions", len(w.types))
	w.setPushOpen(true)
	close(w.ready)
	<-w.pullCtx.Done()
	w.setPushOpen(false) // admitPush admits under w.mu: none is admitted after this
	w.inflight.Wait()
	return nil
}

func (w *Worker) setPushOpen(open bool) {
	w.mu.Lock()
	w.pushOpen = open
	w.mu.Unlock()
}

// admitPush counts a push request in flight, unless the worker is not
// receiving (not ready yet, or stopping).
func (w *Worker) admitPush() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.pushOpen || w.pullCtx.Err() != nil {
		return false
	}
	w.inflight.Add(1)
	return true
}

// PushHandler returns the http.Handler that receives Pub/Sub's push
// requests for the worker's subscriptions, or nil when Config.Push is
// nil. Serve it at the path of PushConfig.Endpoint; Run must be running
// (before Ready and after Shutdown it answers 503, which Pub/Sub retries).
func (w *Worker) PushHandler() http.Handler {
	if w.cfg.Push == nil {
		return nil
	}
	h := &pushHandler{w: w, bySub: make(map[string]*typeRun, len(w.types))}
	for _, t := range w.types {
		h.bySub[t.names.Subscription] = t
	}
	return h
}

type pushHandler struct {
	w     *Worker
	bySub map[string]*typeRun // by subscription ID
}

func (h *pushHandler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := h.w
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "ingest: Pub/Sub push requests are POSTs", http.StatusMethodNotAllowed)
		return
	}
	if err := w.cfg.Push.Authenticator.AuthenticatePush(r); err != nil {
		w.log.Warn("ingest: push request refused: not authenticated", "err", err, "remote", r.RemoteAddr)
		rw.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(rw, "ingest: push request not authenticated (the worker's log says why)", http.StatusUnauthorized)
		return
	}
	if !w.admitPush() {
		http.Error(rw, "ingest: the worker is not receiving (starting or stopping); Pub/Sub redelivers", http.StatusServiceUnavailable)
		return
	}
	defer w.inflight.Done()
	m, sub, status, err := h.parse(rw, r)
	if err != nil {
		w.log.Warn("ingest: push request refused", "err", err, "status", status, "remote", r.RemoteAddr)
		http.Error(rw, err.Error(), status)
		return
	}
	ack := &pushAck{}
	m.acker, m.pushed, m.gone = ack, true, r.Context().Done()
	d := delivery{w: w, sub: sub, m: m}
	d.process()
	status, text, retryAfter := d.pushAnswer(ack)
	if retryAfter > 0 {
		rw.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	if status == http.StatusNoContent {
		rw.WriteHeader(status)
		return
	}
	http.Error(rw, text, status)
}

// pushAck records how a push delivery settled. The delivery runs in the
// request's goroutine, so no lock is needed.
type pushAck struct{ acked, nacked bool }

func (a *pushAck) Ack()  { a.acked = true }
func (a *pushAck) Nack() { a.nacked = true }

// pushAnswer is the HTTP answer to a push request once its delivery
// settled (the package's push notes list them).
func (d *delivery) pushAnswer(a *pushAck) (status int, text string, retryAfter time.Duration) {
	var busy *handlers.BusyError
	switch {
	case a.acked:
		return http.StatusNoContent, "", 0
	case !a.nacked:
		return http.StatusInternalServerError, "ingest: the delivery was not settled", 0
	case errors.As(d.herr, &busy):
		return http.StatusTooManyRequests, fmt.Sprintf("ingest: job %s: %v; Pub/Sub redelivers after its backoff", d.id, busy), max(busy.RetryAfter, time.Second)
	case d.w.pullCtx.Err() != nil:
		return http.StatusServiceUnavailable, fmt.Sprintf("ingest: job %s: the worker is stopping; Pub/Sub redelivers", d.id), 0
	case !d.started && d.w.pauses.paused(d.attrs.Type):
		return http.StatusServiceUnavailable, fmt.Sprintf("ingest: job %s: its type %s is paused (PauseJobType); Pub/Sub redelivers", d.id, d.attrs.Type), 0
	case d.started && d.herr != nil:
		return http.StatusInternalServerError, fmt.Sprintf("ingest: job %s: attempt %d of %d failed; Pub/Sub redelivers after the retry backoff", d.id, d.attempt, d.maxAttempts), 0
	default:
		return http.StatusServiceUnavailable, fmt.Sprintf("ingest: job %s: could not be settled now (the worker's log says why); Pub/Sub redelivers", d.id), 0
	}
}

// pushEnvelope is the JSON body of a wrapped push request.
type pushEnvelope struct {
	Message *struct {
		Attributes map[string]string `json:"attributes"`
		Data       []byte            `json:"data"` // base64 in the JSON
		MessageID  string            `json:"messageId"`
		MessageID2 string            `json:"message_id"`
	} `json:"message"`
	Subscription string `json:"subscription"`
}

// parse reads a push request, wrapped or unwrapped (told apart by the
// x-goog-pubsub-message-id header, which only an unwrapped push with
// metadata has), into a message and the subscription it came on. On error
// it returns the status to answer.
func (h *pushHandler) parse(rw http.ResponseWriter, r *http.Request) (*message, *typeRun, int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxPushBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("ingest: push request body over %d bytes; a Pub/Sub message is at most 10 MB", maxPushBytes)
		}
		return nil, nil, http.StatusBadRequest, fmt.Errorf("ingest: reading the push request: %w", err)
	}
	var m *message
	var subName string
	if id := r.Header.Get("X-Goog-Pubsub-Message-Id"); id != "" {
		m = &message{ID: id, Data: body, Attributes: headerAttributes(r.Header)}
		subName = r.Header.Get("X-Goog-Pubsub-Subscription-Name")
	} else {
		var env pushEnvelope
		if err := json.Unmarshal(body, &env); err != nil || env.Message == nil {
			return nil, nil, http.StatusBadRequest, errors.New(`ingest: not a Pub/Sub push request: want the JSON envelope {"message": {...}, "subscription": ...}, or an unwrapped push with metadata (x-goog-pubsub-* headers: turn on write_metadata)`)
		}
		id := env.Message.MessageID
		if id == "" {
			id = env.Message.MessageID2
		}
		m = &message{ID: id, Data: env.Message.Data, Attributes: env.Message.Attributes}
		subName = env.Subscription
	}
	if m.ID == "" {
		return nil, nil, http.StatusBadRequest, errors.New("ingest: the push request has no message ID")
	}
	if m.Attributes == nil {
		m.Attributes = map[string]string{}
	}
	t, err := h.subscription(subName)
	if err != nil {
		return nil, nil, http.StatusNotFound, err
	}
	return m, t, 0, nil
}

// subscription finds the handler type whose worker subscription is name
// (projects/P/subscriptions/S, as Pub/Sub names it in a push).
func (h *pushHandler) subscription(name string) (*typeRun, error) {
	project := h.w.cfg.Client.Project()
	id, ok := strings.CutPrefix(name, "projects/"+project+"/subscriptions/")
	if t := h.bySub[id]; ok && t != nil {
		return t, nil
	}
	subs := make([]string, 0, len(h.bySub))
	for s := range h.bySub {
		subs = append(subs, s)
	}
	return nil, fmt.Errorf("ingest: push from subscription %q, which is not a worker subscription of project %s here (those are %v); point that subscription elsewhere, or register its type", name, project, subs)
}

// headerAttributes reads an unwrapped push's message attributes from its
// headers: every header but the transport's and Pub/Sub's metadata, by
// its lower-cased name (HTTP header names are case-insensitive, and
// courier's attribute names are lower case).
func headerAttributes(h http.Header) map[string]string {
	attrs := make(map[string]string, len(h))
	for k, vs := range h {
		k = strings.ToLower(k)
		if len(vs) == 0 || notAttribute(k) {
			continue
		}
		attrs[k] = vs[0]
	}
	return attrs
}

// transportHeaders are headers of the request, not of the message.
var transportHeaders = map[string]bool{
	"authorization": true, "content-length": true, "host": true, "user-agent": true, "accept": true,
	"accept-encoding": true, "connection": true, "transfer-encoding": true, "te": true, "upgrade": true,
	"forwarded": true, "via": true, "from": true,
}

func notAttribute(k string) bool {
	if transportHeaders[k] {
		return true
	}
	for _, p := range []string{"x-goog-", "x-forwarded-", "x-cloud-", "x-envoy-"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

package emulatortest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc/codes"
)

// testPushOIDC makes push subscriptions with an oidc_token and checks the
// token each request carries: an RS256 JWT whose signature verifies with
// the emulator's published keys (fetched from Server.JWKSURL, as a push
// receiver would), with the audience (the push endpoint when none is set)
// and the service account as the email claim.
func testPushOIDC(t *testing.T, e *env) {
	e.skipUnless(t, e.f.Push, "push delivery is not faithful")
	const email = "pusher@courier-test.iam.gserviceaccount.com"
	for _, aud := range []string{"https://receiver.example/courier", ""} {
		url, ch := pushEndpoint(t, 0)
		topic := e.topic(t)
		e.sub(t, &pubsubpb.Subscription{Topic: topic, PushConfig: &pubsubpb.PushConfig{
			PushEndpoint:         url,
			AuthenticationMethod: &pubsubpb.PushConfig_OidcToken_{OidcToken: &pubsubpb.PushConfig_OidcToken{ServiceAccountEmail: email, Audience: aud}},
		}})
		e.publish(t, topic, data("signed"))
		p := e.nextPush(t, ch)
		tok, ok := strings.CutPrefix(p.header.Get("Authorization"), "Bearer ")
		if !e.f.PushOIDC {
			t.Logf("%s departs from the real service: a push subscription with an oidc_token sends Authorization %q, no signed token", e.f.Name, p.header.Get("Authorization"))
			return
		}
		if !ok {
			t.Fatalf("push request has Authorization %q, want a Bearer token", p.header.Get("Authorization"))
		}
		keys := e.jwks(t)
		parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatalf("the token is not an RS256 JWT: %v", err)
		}
		var claims jwt.Claims
		var extra struct {
			Email         string `json:"email"`
			EmailVerified bool   `json:"email_verified"`
		}
		if err := parsed.Claims(keys, &claims, &extra); err != nil {
			t.Fatalf("the token does not verify with the emulator's keys: %v", err)
		}
		wantAud := aud
		if wantAud == "" {
			wantAud = url
		}
		if err := claims.Validate(jwt.Expected{Issuer: "https://accounts.google.com", AnyAudience: jwt.Audience{wantAud}, Time: time.Now()}); err != nil {
			t.Errorf("claims %+v: %v (want issuer https://accounts.google.com, audience %s, valid now)", claims, err, wantAud)
		}
		if extra.Email != email || !extra.EmailVerified {
			t.Errorf("email claim %q (verified %v), want %s, verified", extra.Email, extra.EmailVerified, email)
		}
	}
}

// jwks fetches the emulator's key set from its URL, or takes it from the
// Server when it has no port.
func (e *env) jwks(t *testing.T) *jose.JSONWebKeySet {
	t.Helper()
	raw := e.srv.JWKS()
	if e.srv.JWKSURL != "" {
		res, err := http.Get(e.srv.JWKSURL)
		if err != nil {
			t.Fatalf("GET %s: %v", e.srv.JWKSURL, err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", e.srv.JWKSURL, res.Status)
		}
		if raw, err = io.ReadAll(res.Body); err != nil {
			t.Fatal(err)
		}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("the emulator's JWKS %q: %v, want a key set", raw, err)
	}
	return &set
}

// testExpiration checks expiration_policy as the service documents it:
// 31 days by default, at least 1 day, unset ttl never expires. With
// Features.Advance it moves the emulator's clock and sees a subscription
// and a snapshot expire.
func testExpiration(t *testing.T, e *env) {
	topic := e.topic(t)
	name := e.sub(t, &pubsubpb.Subscription{Topic: topic})
	got, err := e.raw.Sub.GetSubscription(e.ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
	if err != nil {
		t.Fatal(err)
	}
	var departs []string
	if ttl := got.GetExpirationPolicy().GetTtl().AsDuration(); ttl != 31*24*time.Hour {
		if e.f.Expiration {
			t.Errorf("default expiration_policy.ttl %v, want 31 days", ttl)
		}
		departs = append(departs, fmt.Sprintf("it reports expiration_policy %v by default, not a ttl of 31 days", got.GetExpirationPolicy()))
	}
	_, err = e.raw.Sub.CreateSubscription(e.ctx, &pubsubpb.Subscription{Name: Name("subscriptions", "short"), Topic: topic,
		ExpirationPolicy: &pubsubpb.ExpirationPolicy{Ttl: dur(time.Hour)}})
	if e.f.Expiration {
		wantCode(t, "expiration_policy.ttl of 1 hour (the minimum is 1 day)", err, codes.InvalidArgument)
	} else if err == nil {
		departs = append(departs, "it accepts an expiration_policy.ttl of 1 hour (the minimum is 1 day)")
	}
	if len(departs) > 0 {
		t.Logf("%s departs from the real service: %s", e.f.Name, strings.Join(departs, "; "))
	}
	if e.f.Advance == nil {
		t.Skipf("%s has no clock the suite can move; expiry itself is not checked", e.f.Name)
	}
	day := 24 * time.Hour
	idle := e.sub(t, &pubsubpb.Subscription{Topic: topic, ExpirationPolicy: &pubsubpb.ExpirationPolicy{Ttl: dur(day)}})
	forever := e.sub(t, &pubsubpb.Subscription{Topic: topic, ExpirationPolicy: &pubsubpb.ExpirationPolicy{}})
	e.publish(t, topic, data("x"))
	snap := Name("snapshots", "exp")
	if _, err := e.raw.Sub.CreateSnapshot(e.ctx, &pubsubpb.CreateSnapshotRequest{Name: snap, Subscription: forever}); err != nil {
		t.Fatal(err)
	}
	e.f.Advance(e.srv, day+time.Hour)
	_, err = e.raw.Sub.GetSubscription(e.ctx, &pubsubpb.GetSubscriptionRequest{Subscription: idle})
	wantCode(t, "GetSubscription 25 hours after the last activity, with a ttl of 1 day", err, codes.NotFound)
	subs, err := e.raw.Pub.ListTopicSubscriptions(e.ctx, &pubsubpb.ListTopicSubscriptionsRequest{Topic: topic})
	if err != nil || slices.Contains(subs.Subscriptions, idle) || !slices.Contains(subs.Subscriptions, forever) {
		t.Fatalf("ListTopicSubscriptions after expiry: %v, %v; want %s gone and %s kept", subs, err, idle, forever)
	}
	e.f.Advance(e.srv, 7*day)
	_, err = e.raw.Sub.GetSnapshot(e.ctx, &pubsubpb.GetSnapshotRequest{Snapshot: snap})
	wantCode(t, "GetSnapshot 8 days after its oldest message", err, codes.NotFound)
	if _, err := e.raw.Sub.GetSubscription(e.ctx, &pubsubpb.GetSubscriptionRequest{Subscription: forever}); err != nil {
		t.Fatalf("a subscription without a ttl expired: %v", err)
	}
}

package pushauth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/courierq/courier/pushauth"
)

const (
	aud   = "https://worker.example.run.app/pubsub/push"
	email = "pusher@proj.iam.gserviceaccount.com"
)

// signer is a key of the test's own, published (or not) in a JWKS.
type signer struct {
	kid string
	key *rsa.PrivateKey
}

func newSigner(t *testing.T, kid string) signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, key: k}
}

func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &s.key.PublicKey, KeyID: s.kid, Algorithm: "RS256", Use: "sig"}
}

// token signs claims (the standard ones, changed by edit) as s would, with
// alg RS256.
func (s signer) token(t *testing.T, now time.Time, edit func(c map[string]any)) string {
	t.Helper()
	c := map[string]any{
		"iss": "https://accounts.google.com", "aud": aud, "sub": "1234", "azp": "1234",
		"email": email, "email_verified": true,
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

// jwks serves a key set over real HTTP and counts its fetches.
type jwks struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetches atomic.Int32
	header  string // Cache-Control
}

func serveJWKS(t *testing.T, keys ...signer) *jwks {
	j := &jwks{header: "public, max-age=20000"}
	for _, k := range keys {
		j.keys = append(j.keys, k.jwk())
	}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		w.Header().Set("Cache-Control", j.header)
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: j.keys})
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwks) set(keys ...signer) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.keys = nil
	for _, k := range keys {
		j.keys = append(j.keys, k.jwk())
	}
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newVerifier(t *testing.T, j *jwks, c *clock, edit func(*pushauth.Config)) *pushauth.Verifier {
	t.Helper()
	cfg := pushauth.Config{Audience: aud, Email: email, JWKSURL: j.srv.URL, Now: c.now}
	if edit != nil {
		edit(&cfg)
	}
	v, err := pushauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	good := newSigner(t, "k1")
	forger := newSigner(t, "k1") // another key that claims good's key ID
	stranger := newSigner(t, "k9")
	j := serveJWKS(t, good)
	v := newVerifier(t, j, &clock{t: now}, nil)

	for _, tc := range []struct {
		name  string
		token string
		want  string // "" accepts
	}{
		{"valid", good.token(t, now, nil), ""},
		{"audience in other case", good.token(t, now, func(c map[string]any) { c["aud"] = strings.ToUpper(aud) }), ""},
		{"other issuer form", good.token(t, now, func(c map[string]any) { c["iss"] = "accounts.google.com" }), ""},
		{"within leeway after exp", good.token(t, now, func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() }), ""},
		{"bad signature", forger.token(t, now, nil), "signature does not verify"},
		{"unknown key", stranger.token(t, now, nil), `no key "k9"`},
		{"expired", good.token(t, now, func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		}), "expired"},
		{"issued in the future", good.token(t, now, func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }), "issued in the future"},
		{"wrong audience", good.token(t, now, func(c map[string]any) { c["aud"] = "https://elsewhere.example/push" }), "audience"},
		{"wrong issuer", good.token(t, now, func(c map[string]any) { c["iss"] = "https://evil.example" }), "issuer"},
		{"other service account", good.token(t, now, func(c map[string]any) { c["email"] = "someone@gmail.com" }), "want the push service account"},
		{"email not verified", good.token(t, now, func(c map[string]any) { c["email_verified"] = false }), "email_verified false"},
		{"no exp", good.token(t, now, func(c map[string]any) { delete(c, "exp") }), "no exp"},
		{"not a JWT", "not.a.jwt", "invalid push token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := v.Verify(context.Background(), tc.token)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused a good token: %v", err)
				}
				if claims.Email != email || !claims.EmailVerified {
					t.Fatalf("claims %+v", claims)
				}
				return
			}
			if !errors.Is(err, pushauth.ErrInvalidToken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidToken saying %q", err, tc.want)
			}
		})
	}

	// HS256 with the public key's bytes as the secret (algorithm confusion)
	// is refused before any key is used.
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("secret-secret-secret-secret-32by")}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	tok, _ := jwt.Signed(hs).Claims(map[string]any{"iss": "https://accounts.google.com", "aud": aud, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}).Serialize()
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, pushauth.ErrInvalidToken) {
		t.Fatalf("an HS256 token: err = %v, want ErrInvalidToken", err)
	}
}

func TestAuthenticatePush(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	good := newSigner(t, "k1")
	v := newVerifier(t, serveJWKS(t, good), &clock{t: now}, nil)
	req := func(h string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, aud, nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		return r
	}
	if err := v.AuthenticatePush(req("Bearer " + good.token(t, now, nil))); err != nil {
		t.Fatalf("good token: %v", err)
	}
	if err := v.AuthenticatePush(req("bearer " + good.token(t, now, nil))); err != nil {
		t.Fatalf("scheme in lower case: %v", err)
	}
	for _, h := range []string{"", "Bearer ", "Basic dXNlcjpwYXNz", good.token(t, now, nil)} {
		if err := v.AuthenticatePush(req(h)); !errors.Is(err, pushauth.ErrNoToken) {
			t.Errorf("Authorization %q: err = %v, want ErrNoToken", h, err)
		}
	}
}

// The key set is fetched once and kept for its max-age; a token naming a
// key the set lacks fetches it again only once MinRefresh has passed since
// the last fetch, so a rotation is picked up and forged key IDs cost no
// fetch each.
func TestKeySetCacheAndRotation(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := &clock{t: start}
	old, next := newSigner(t, "old"), newSigner(t, "next")
	j := serveJWKS(t, old)
	v := newVerifier(t, j, c, nil)
	for range 5 {
		if _, err := v.Verify(context.Background(), old.token(t, c.now(), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := j.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for 5 tokens, want 1", n)
	}
	// Google rotates: the set now holds the next key too.
	j.set(old, next)
	for range 3 {
		if _, err := v.Verify(context.Background(), next.token(t, c.now(), nil)); !errors.Is(err, pushauth.ErrInvalidToken) {
			t.Fatalf("a key unknown within MinRefresh of the last fetch: err = %v, want ErrInvalidToken", err)
		}
	}
	if n := j.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want still 1 (MinRefresh not passed)", n)
	}
	c.add(pushauth.DefaultMinRefresh)
	if _, err := v.Verify(context.Background(), next.token(t, c.now(), nil)); err != nil {
		t.Fatalf("after MinRefresh the rotated key should be fetched: %v", err)
	}
	if n := j.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// Past max-age the set is fetched again; if that fails, the stale set
	// still verifies.
	c.add(20000 * time.Second)
	j.srv.Close()
	if _, err := v.Verify(context.Background(), old.token(t, c.now(), nil)); err != nil {
		t.Fatalf("with the key set's server gone, the stale set should still verify: %v", err)
	}
}

// A key set served with no-store is still kept for MinRefresh.
func TestKeySetNoStore(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	k := newSigner(t, "k")
	j := serveJWKS(t, k)
	j.header = "no-store"
	v := newVerifier(t, j, c, nil)
	for range 3 {
		if _, err := v.Verify(context.Background(), k.token(t, c.now(), nil)); err != nil {
			t.Fatal(err)
		}
	}
	c.add(pushauth.DefaultMinRefresh)
	if _, err := v.Verify(context.Background(), k.token(t, c.now(), nil)); err != nil {
		t.Fatal(err)
	}
	if n := j.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (one, then one more after MinRefresh)", n)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  pushauth.Config
		want string
	}{
		{pushauth.Config{}, "Audience is empty"},
		{pushauth.Config{Audience: aud, JWKSURL: "ftp://x/keys"}, "JWKSURL"},
		{pushauth.Config{Audience: aud, Issuers: []string{}}, "Issuers"},
		{pushauth.Config{Audience: aud, Leeway: -time.Second}, "Leeway"},
	} {
		if _, err := pushauth.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error about %s", tc.cfg, err, tc.want)
		}
	}
}

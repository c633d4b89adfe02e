// Package pushauth verifies the OIDC ID tokens that Pub/Sub push requests
// carry (Authorization: Bearer JWT, for a push subscription with an
// oidc_token): the RS256 signature against a JSON Web Key Set (Google's by
// default, fetched over HTTPS and cached), the issuer, the audience, the
// expiry and, when configured, the service account's email. A Verifier is
// the Authenticator of an ingest.PushConfig.
//
// It is for courier's push workers and tests of them. It is not an OIDC
// client (no discovery, no sessions, no access tokens), and it answers one
// question only: did Pub/Sub, signing as the expected service account, send
// this request to this audience?
package pushauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GoogleJWKSURL serves the keys Google signs ID tokens with, Pub/Sub's
// push tokens among them.
const GoogleJWKSURL = "https://www.googleapis.com/oauth2/v3/certs"

// GoogleIssuers are the iss values of Google-signed ID tokens.
var GoogleIssuers = []string{"https://accounts.google.com", "accounts.google.com"}

// Defaults of Config fields left zero.
const (
	DefaultLeeway     = time.Minute
	DefaultMinRefresh = time.Minute
	DefaultKeysMaxAge = time.Hour
	maxKeysMaxAge     = 24 * time.Hour
)

var (
	// ErrNoToken: the request carries no bearer token.
	ErrNoToken = errors.New("pushauth: no bearer token in the Authorization header")
	// ErrInvalidToken is wrapped by every refusal of a token that was
	// there: malformed, signed by no key of the set, expired, for another
	// audience or issuer, or from another service account.
	ErrInvalidToken = errors.New("pushauth: invalid push token")
)

// Config configures a Verifier. Audience is required; every other zero field
// means its default.
type Config struct {
	// Audience is the aud the tokens must carry: the push subscription's
	// audience, which Pub/Sub sets to the push endpoint's URL unless the
	// subscription names one. Compared without regard to case, as Pub/Sub
	// documents it.
	Audience string
	// Email, when set, is the service account the tokens must be for (the
	// email claim, with email_verified): the push subscription's
	// oidc_token service account. "" accepts any signer: anyone with a
	// Google account can get a Google-signed token for any audience, so set
	// it outside tests.
	Email string
	// JWKSURL serves the signing keys as a JSON Web Key Set. "" means
	// GoogleJWKSURL.
	JWKSURL string
	// Issuers are the accepted iss values. nil means GoogleIssuers.
	Issuers []string
	// HTTPClient fetches the key set. nil means a client with a 10s
	// timeout.
	HTTPClient *http.Client
	// Leeway is the clock skew tolerated on exp, nbf and iat. 0 means
	// DefaultLeeway (1 minute).
	Leeway time.Duration
	// MinRefresh is the least time between two fetches of the key set: the
	// set is kept for the max-age its server gives (DefaultKeysMaxAge when
	// it gives none, at most 24h) but at least this long, and a token that
	// names a key the set lacks (a rotation) fetches it again only if the
	// last fetch is this old, so forged key IDs cannot make the verifier
	// fetch on every request. 0 means DefaultMinRefresh (1 minute).
	MinRefresh time.Duration
	// Now is the clock. nil means time.Now.
	Now func() time.Time
}

// Verifier checks push tokens. It is safe for concurrent use; it fetches
// the key set on first use, not in New.
type Verifier struct {
	cfg  Config
	keys *keySet
}

// New validates cfg and returns a Verifier; it does no I/O.
func New(cfg Config) (*Verifier, error) {
	if cfg.Audience == "" {
		return nil, errors.New("pushauth: Config.Audience is empty; set the push subscription's audience (Pub/Sub's default is the push endpoint's URL)")
	}
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = GoogleJWKSURL
	}
	if u, err := url.Parse(cfg.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("pushauth: Config.JWKSURL %q is not an http(s) URL; use %s, or an emulator's key set URL in tests", cfg.JWKSURL, GoogleJWKSURL)
	}
	if cfg.Issuers == nil {
		cfg.Issuers = GoogleIssuers
	}
	if len(cfg.Issuers) == 0 || slices.Contains(cfg.Issuers, "") {
		return nil, fmt.Errorf("pushauth: Config.Issuers %q: list the accepted issuers, or leave it nil for Google's", cfg.Issuers)
	}
	switch {
	case cfg.Leeway < 0, cfg.MinRefresh < 0:
		return nil, fmt.Errorf("pushauth: Config.Leeway (%v) and MinRefresh (%v) must not be negative", cfg.Leeway, cfg.MinRefresh)
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.MinRefresh == 0 {
		cfg.MinRefresh = DefaultMinRefresh
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg, keys: &keySet{url: cfg.JWKSURL, client: cfg.HTTPClient, minRefresh: cfg.MinRefresh, now: cfg.Now}}, nil
}

// Claims are what a verified token says.
type Claims struct {
	Issuer, Subject, Email string
	EmailVerified          bool
	Audience               []string
	IssuedAt, Expiry       time.Time
}

// extra are the claims go-jose's jwt.Claims does not hold.
type extra struct {
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
}

// AuthenticatePush verifies the bearer token of r (ingest.PushAuthenticator).
func (v *Verifier) AuthenticatePush(r *http.Request) error {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return ErrNoToken
	}
	_, err := v.Verify(r.Context(), strings.TrimSpace(token))
	return err
}

// Verify checks token and returns its claims. Every refusal wraps
// ErrInvalidToken, except a key set that cannot be fetched (that error says
// so: the token may be fine).
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return nil, fmt.Errorf("%w: the token names no signing key (kid)", ErrInvalidToken)
	}
	kid := tok.Headers[0].KeyID
	key, err := v.keys.key(ctx, kid)
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var ext extra
	if err := tok.Claims(key.Key, &std, &ext); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify with key %s of %s: %v", ErrInvalidToken, kid, v.cfg.JWKSURL, err)
	}
	now := v.cfg.Now()
	switch {
	case std.Expiry == nil:
		return nil, fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	case std.IssuedAt == nil:
		return nil, fmt.Errorf("%w: no iat claim", ErrInvalidToken)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Time: now}, v.cfg.Leeway); err != nil {
		return nil, fmt.Errorf("%w: %v (exp %s, now %s)", ErrInvalidToken, err, std.Expiry.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !slices.Contains(v.cfg.Issuers, std.Issuer) {
		return nil, fmt.Errorf("%w: issuer %q, want one of %q", ErrInvalidToken, std.Issuer, v.cfg.Issuers)
	}
	if !slices.ContainsFunc(std.Audience, func(a string) bool { return strings.EqualFold(a, v.cfg.Audience) }) {
		return nil, fmt.Errorf("%w: audience %q, want %q", ErrInvalidToken, []string(std.Audience), v.cfg.Audience)
	}
	if v.cfg.Email != "" && (!strings.EqualFold(ext.Email, v.cfg.Email) || !ext.EmailVerified) {
		return nil, fmt.Errorf("%w: signed for %q (email_verified %v), want the push service account %q", ErrInvalidToken, ext.Email, ext.EmailVerified, v.cfg.Email)
	}
	return &Claims{
		Issuer: std.Issuer, Subject: std.Subject, Email: ext.Email, EmailVerified: ext.EmailVerified,
		Audience: std.Audience, IssuedAt: std.IssuedAt.Time(), Expiry: std.Expiry.Time(),
	}, nil
}

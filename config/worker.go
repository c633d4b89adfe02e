package config

import (
	"net/url"
	"slices"
	"strings"
)

// Worker configures how this process's workers receive their messages.
type Worker struct {
	// Mode is "pull" (the default): workers pull from their subscriptions
	// and hold each message while it waits for a rate-limit token or a
	// concurrency slot, so the process needs CPU between requests. "push":
	// Pub/Sub POSTs each message to push.endpoint, served on the HTTP port,
	// and the answer acks or nacks it (429 when a limit is reached), as on
	// Cloud Run, where a service that only answers requests scales to zero.
	// A subscription is either pull or push, so every worker replica of a
	// deployment uses the same mode: courierd changes its subscriptions to
	// match at start.
	Mode string `json:"mode,omitempty"`
	// Push configures push mode.
	Push Push `json:"push,omitzero"`
}

// Push configures push delivery (worker.mode: push).
type Push struct {
	// Endpoint is the URL Pub/Sub pushes to: this service's public URL and
	// a path, e.g. https://courier-worker-abc-uc.a.run.app/pubsub/push.
	// The Node serves that path on its HTTP port, and the worker
	// subscriptions courierd creates (or aligns) push there. Required in
	// push mode.
	Endpoint string `json:"endpoint,omitempty"`
	// ServiceAccount is the service account Pub/Sub signs each push's OIDC
	// token as: set on the subscriptions courierd creates, and the email
	// every token must carry. Required with auth oidc unless
	// pubsub.disableCreate is set (then "" accepts a Google-signed token
	// of any account for the audience, which anyone can get: set it).
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Audience is the token's aud, on the subscriptions and checked on
	// each push. "" means the endpoint (Pub/Sub's default).
	Audience string `json:"audience,omitempty"`
	// JWKSURL serves the keys tokens are signed with. "" means Google's
	// (DefaultJWKSURL); in tests, courier's emulator's key set URL.
	JWKSURL string `json:"jwksURL,omitempty"`
	// Issuers are the accepted token issuers. Empty means Google's:
	// https://accounts.google.com and accounts.google.com.
	Issuers []string `json:"issuers,omitempty"`
	// Unwrapped makes the subscriptions courierd creates push the message
	// data as the body, attributes and metadata as headers (payload
	// unwrapping with write_metadata). Both forms are received either way;
	// the JSON envelope (the default) keeps attribute names exactly.
	Unwrapped bool `json:"unwrapped,omitempty"`
	// Auth is "oidc" (the default: a push without a valid token is refused
	// with 401) or "none" (pushes are not authenticated: dev mode only).
	Auth string `json:"auth,omitempty"`
}

// Defaults of worker settings left zero.
const (
	DefaultWorkerMode = "pull"
	DefaultPushAuth   = "oidc"
	DefaultJWKSURL    = "https://www.googleapis.com/oauth2/v3/certs"
)

// validate checks the worker section; c is the whole config (dev mode,
// HTTP, disableCreate bear on it).
func (w Worker) validate(c *Config) []error {
	var errs []error
	bad := func(field string, v any, fix string) {
		errs = append(errs, &ValidationError{Field: "worker." + field, Value: v, Fix: fix})
	}
	switch w.Mode {
	case "", "pull":
		return nil
	case "push":
	default:
		bad("mode", w.Mode, `use "pull" (the default) or "push"`)
		return errs
	}
	p := w.Push
	if p.Endpoint == "" {
		bad("push.endpoint", `""`, "set the URL Pub/Sub pushes to: this service's URL and a path, e.g. https://courier-worker-abc-uc.a.run.app/pubsub/push")
	} else if u, err := url.Parse(p.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("push.endpoint", p.Endpoint, "use an absolute https URL with a path, e.g. https://courier-worker-abc-uc.a.run.app/pubsub/push")
	} else if u.Path == "" || u.Path == "/" || strings.ContainsAny(u.Path, "{} ") {
		bad("push.endpoint", p.Endpoint, "give it a path of its own, such as /pubsub/push: the HTTP port serves other routes too")
	}
	if c.HTTP.Addr == "-" {
		bad("mode", w.Mode, `push mode receives on the HTTP port, and http.addr is "-": set http.addr (e.g. ":8080")`)
	}
	if p.JWKSURL != "" {
		if u, err := url.Parse(p.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("push.jwksURL", p.JWKSURL, "use an http(s) URL serving a JSON Web Key Set, or \"\" for Google's")
		}
	}
	if slices.Contains(p.Issuers, "") {
		bad("push.issuers", p.Issuers, "an issuer is empty; list issuers such as https://accounts.google.com, or none for Google's")
	}
	switch p.Auth {
	case "", "oidc":
		if p.ServiceAccount == "" && !c.PubSub.DisableCreate {
			bad("push.serviceAccount", `""`, "name the service account Pub/Sub signs push tokens as (e.g. pubsub-push@PROJECT.iam.gserviceaccount.com): courierd puts it on the subscriptions it creates, and checks it on every push")
		}
	case "none":
		if !c.GRPC.DevMode {
			bad("push.auth", p.Auth, "unauthenticated pushes are accepted in dev mode only (grpc.devMode: true); outside it use oidc (the default) with push.serviceAccount")
		}
	default:
		bad("push.auth", p.Auth, `use "oidc" (the default) or "none" (dev mode only)`)
	}
	return errs
}

// withDefaults fills the worker section's defaults.
func (w Worker) withDefaults() Worker {
	if w.Mode == "" {
		w.Mode = DefaultWorkerMode
	}
	if w.Mode != "push" {
		return w
	}
	if w.Push.Auth == "" {
		w.Push.Auth = DefaultPushAuth
	}
	if w.Push.Audience == "" {
		w.Push.Audience = w.Push.Endpoint
	}
	if w.Push.JWKSURL == "" {
		w.Push.JWKSURL = DefaultJWKSURL
	}
	return w
}

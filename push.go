package courier

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/courierq/courier/config"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/pushauth"
)

// pushConfig is the workers' push configuration (worker.mode: push): the
// endpoint and token settings the subscriptions get, and the verifier of
// every push's OIDC token (none only in dev mode, which config checks).
func (p *parts) pushConfig() (*ingest.PushConfig, error) {
	pc := p.cfg.Worker.Push
	c := &ingest.PushConfig{Endpoint: pc.Endpoint, ServiceAccountEmail: pc.ServiceAccount, Unwrapped: pc.Unwrapped}
	if pc.Audience != pc.Endpoint {
		c.Audience = pc.Audience // else Pub/Sub's default, the endpoint
	}
	if pc.Auth == "none" {
		p.n.log.Warn("courier: push requests are not authenticated (worker.push.auth: none, dev mode): anyone who reaches the endpoint can run jobs", "endpoint", pc.Endpoint)
		c.Authenticator = ingest.InsecurePushAuth
		return c, nil
	}
	var issuers []string
	if len(pc.Issuers) > 0 {
		issuers = pc.Issuers
	}
	v, err := pushauth.New(pushauth.Config{Audience: pc.Audience, Email: pc.ServiceAccount, JWKSURL: pc.JWKSURL, Issuers: issuers})
	if err != nil {
		return nil, err
	}
	if pc.ServiceAccount == "" {
		p.n.log.Warn("courier: worker.push.serviceAccount is not set: any Google-signed token for the audience is accepted, and anyone can get one; name the push service account", "audience", pc.Audience)
	}
	c.Authenticator = v
	return c, nil
}

// pushRoute serves the workers' push handler at the endpoint's path, when
// they receive by push.
func (p *parts) pushRoute(mux *http.ServeMux) error {
	if p.worker == nil || p.worker.PushHandler() == nil {
		return nil
	}
	u, err := url.Parse(p.cfg.Worker.Push.Endpoint)
	if err != nil {
		return &config.ValidationError{Field: "worker.push.endpoint", Value: p.cfg.Worker.Push.Endpoint, Fix: err.Error()}
	}
	path := u.EscapedPath()
	if _, pattern := mux.Handler(&http.Request{Method: http.MethodPost, URL: &url.URL{Path: u.Path, RawPath: u.RawPath}, Host: "localhost"}); pattern != "" {
		return &config.ValidationError{Field: "worker.push.endpoint", Value: p.cfg.Worker.Push.Endpoint,
			Fix: fmt.Sprintf("its path %s is served by the Node's route %q; choose another, such as /pubsub/push", path, pattern)}
	}
	if strings.HasSuffix(path, "/") {
		path += "{$}"
	}
	mux.Handle("POST "+path, p.worker.PushHandler())
	return nil
}

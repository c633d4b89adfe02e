package config_test

import (
	"strings"
	"testing"

	"github.com/courierq/courier/config"
)

func TestWorkerPushErrors(t *testing.T) {
	const base = "pubsub: {project: p}\n"
	for _, tc := range []struct{ doc, want string }{
		{"worker: {mode: pushy}\n", `worker.mode: pushy: use "pull" (the default) or "push"`},
		{"worker: {mode: push}\n", "worker.push.endpoint: \"\": set the URL Pub/Sub pushes to"},
		{"worker: {mode: push, push: {endpoint: /pubsub/push, serviceAccount: a@b}}\n", "worker.push.endpoint: /pubsub/push: use an absolute https URL"},
		{"worker: {mode: push, push: {endpoint: 'https://w.run.app', serviceAccount: a@b}}\n", "worker.push.endpoint: https://w.run.app: give it a path of its own"},
		{"worker: {mode: push, push: {endpoint: 'https://w.run.app/'}}\n", "give it a path of its own"},
		{"worker: {mode: push, push: {endpoint: 'https://w.run.app/push'}}\n", "worker.push.serviceAccount: \"\": name the service account"},
		{"worker: {mode: push, push: {endpoint: 'https://w.run.app/push', serviceAccount: a@b, auth: none}}\n", "worker.push.auth: none: unauthenticated pushes are accepted in dev mode only"},
		{"worker: {mode: push, push: {endpoint: 'https://w.run.app/push', serviceAccount: a@b, auth: basic}}\n", `worker.push.auth: basic: use "oidc"`},
		{"worker: {mode: push, push: {endpoint: 'https://w.run.app/push', serviceAccount: a@b, jwksURL: 'file:///keys'}}\n", "worker.push.jwksURL: file:///keys"},
		{"worker: {mode: push, push: {endpoint: 'https://w.run.app/push', serviceAccount: a@b, issuers: ['']}}\n", "worker.push.issuers"},
		{"http: {addr: '-'}\nworker: {mode: push, push: {endpoint: 'https://w.run.app/push', serviceAccount: a@b}}\n", `http.addr is "-"`},
		{"worker: {mode: push, push: {endpont: x}}\n", "worker.push.endpont: unknown field"},
	} {
		_, err := config.Parse([]byte(base + tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
	for _, doc := range []string{
		"worker: {mode: pull}\n",
		"worker: {mode: push, push: {endpoint: 'https://w.run.app/pubsub/push', serviceAccount: a@b}}\n",
		// Subscriptions made elsewhere: no service account needed (a warning at start).
		"pubsub: {project: p, disableCreate: true}\nworker: {mode: push, push: {endpoint: 'https://w.run.app/pubsub/push'}}\n",
		"grpc: {devMode: true}\nworker: {mode: push, push: {endpoint: 'http://127.0.0.1:8006/push', auth: none}}\n",
	} {
		if !strings.HasPrefix(doc, "pubsub:") {
			doc = base + doc
		}
		if _, err := config.Parse([]byte(doc)); err != nil {
			t.Errorf("Parse(%q): %v", doc, err)
		}
	}
}

func TestWorkerDefaults(t *testing.T) {
	c, err := config.Parse([]byte("pubsub: {project: p}\nworker: {mode: push, push: {endpoint: 'https://w.run.app/pubsub/push', serviceAccount: a@b}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.WithDefaults().Worker
	if d.Mode != "push" || d.Push.Auth != "oidc" || d.Push.Audience != "https://w.run.app/pubsub/push" || d.Push.JWKSURL != "https://www.googleapis.com/oauth2/v3/certs" {
		t.Fatalf("push defaults: %+v", d)
	}
	if m := (config.Config{}).WithDefaults().Worker.Mode; m != "pull" {
		t.Fatalf("default mode %q, want pull", m)
	}
}

func TestWorkerFromEnv(t *testing.T) {
	c, _, err := config.ParseEnv([]byte("pubsub: {project: p}\n"), []string{
		"COURIER_WORKER_MODE=push",
		"COURIER_WORKER_PUSH_ENDPOINT=https://w.run.app/pubsub/push",
		"COURIER_WORKER_PUSH_SERVICEACCOUNT=pusher@p.iam.gserviceaccount.com",
		"COURIER_WORKER_PUSH_ISSUERS=https://accounts.google.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Worker.Push
	if c.Worker.Mode != "push" || p.Endpoint != "https://w.run.app/pubsub/push" || p.ServiceAccount != "pusher@p.iam.gserviceaccount.com" || len(p.Issuers) != 1 {
		t.Fatalf("worker from the environment: %+v", c.Worker)
	}
}

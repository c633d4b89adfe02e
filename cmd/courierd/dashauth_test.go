package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDashboardReadRoles: with grpc.devMode off and
// http.dashboard.readRoles set, dashboard pages need a caller that the gRPC
// server's authenticators recognise (bearer token or proxy headers) holding
// one of the roles; static files, /metrics and /readyz stay open.
func TestDashboardReadRoles(t *testing.T) {
	dir := t.TempDir()
	hash := func(tok string) string { h := sha256.Sum256([]byte(tok)); return hex.EncodeToString(h[:]) }
	tokens := fmt.Sprintf("tokens:\n- {sha256: %s, identity: vera, roles: [viewer]}\n- {sha256: %s, identity: otto, roles: [enqueuer]}\n",
		hash("viewer-token"), hash("other-token"))
	tokensPath := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokensPath, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	st := startCourierdDoc(t, fmt.Sprintf(`grpc:
  addr: 127.0.0.1:0
  auth:
    tokensFile: %s
    proxyHeaders: true
    trustedProxies: [127.0.0.0/8]
http:
  addr: 127.0.0.1:0
  dashboard:
    readRoles: [viewer, operator]
pubsub:
  emulator: embedded
store:
  path: %s
handlers:
  demo: true
`, tokensPath, filepath.Join(dir, "jobs.db")))
	base := "http://" + st.HTTPAddr()

	for _, c := range []struct {
		name, path string
		headers    map[string]string
		code       int
		want       string
	}{
		{"no credentials", "/jobs", nil, 401, "needs one of the roles"},
		{"bad token", "/jobs", map[string]string{"Authorization": "Bearer nope"}, 401, "unknown bearer token"},
		{"token without the role", "/", map[string]string{"Authorization": "Bearer other-token"}, 403, `token "otto" holds the roles [enqueuer]`},
		{"token with the role", "/jobs", map[string]string{"Authorization": "Bearer viewer-token"}, 200, `id="jobs"`},
		{"proxy with the role", "/", map[string]string{"X-Webauth-User": "ann", "X-Webauth-Roles": "dev, operator"}, 200, `id="overview"`},
		{"proxy without the role", "/jobs", map[string]string{"X-Webauth-User": "bob", "X-Webauth-Roles": "dev"}, 403, `proxy "bob"`},
		{"action without credentials", "/jobs/x/cancel", nil, 401, "needs one of the roles"},
		{"static files stay open", "/static/style.css", nil, 200, "font-family"},
		{"metrics stay open", "/metrics", nil, 200, "courier_"},
	} {
		method := http.MethodGet
		if strings.HasSuffix(c.path, "/cancel") {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, base+c.path, nil)
		for k, v := range c.headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %s %s = %d, want %d with %q; body: %.300s", c.name, method, c.path, resp.StatusCode, c.code, c.want, body)
		}
		if c.code == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without a Bearer challenge", c.name)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/jobs/sqlite"
)

// cliEnv runs the CLI in this process with exactly the environment env.
func cliEnv(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runEnv(ctx, args, &out, &out, func(k string) string { return env[k] })
	return out.String(), err
}

// securedServer serves the JobService outside dev mode: callers need the
// role "jobs", from a bearer token ("good-token") or, with tls, a client
// certificate ("cli-user"). It returns the address and the PKI's folder
// (ca.pem, cli.pem, cli-key.pem; the server's name is courier.test).
func securedServer(t *testing.T, tls bool) (addr, dir string) {
	t.Helper()
	dir = t.TempDir()
	sum := sha256.Sum256([]byte("good-token"))
	tokens := filepath.Join(dir, "tokens.yaml")
	writeFile(t, tokens, "tokens:\n  - {sha256: "+hex.EncodeToString(sum[:])+", identity: tok-user, roles: [jobs]}\n")
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	svc, err := jobservice.New(jobservice.Config{Store: store, Types: jobservice.TypeMap{"courier.demo.v1.Echo": {}}, Auth: backend.Policy{Rule: backend.Rule{Roles: []string{"jobs"}}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := backend.Config{Addr: "127.0.0.1:0", Logger: quiet(), Auth: backend.AuthConfig{TokensFile: tokens}}
	if tls {
		writePKI(t, dir)
		cfg.TLS = &backend.TLSConfig{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"), ClientCAFile: filepath.Join(dir, "ca.pem")}
		cfg.Auth.MTLSRoles = map[string][]string{"cli-user": {"jobs"}}
	}
	srv, err := backend.New(cfg, svc)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return srv.Addr().String(), dir
}

// TestTokenFromFlagEnvironmentAndProfile: the bearer token comes from
// --token-file, else $COURIER_TOKEN, else the profile's tokenFile (relative
// to the profile file), and the server's answer says which are missing.
func TestTokenFromFlagEnvironmentAndProfile(t *testing.T) {
	addr, dir := securedServer(t, false)
	writeFile(t, filepath.Join(dir, "good.token"), "good-token\n")
	writeFile(t, filepath.Join(dir, "bad.token"), "bad-token\n")
	profiles := filepath.Join(dir, "config.yaml")
	writeFile(t, profiles, fmt.Sprintf("profile: dev\nprofiles:\n  dev: {addr: %q, tokenFile: good.token}\n  nokey: {addr: %q}\n", addr, addr))

	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string // "" means success
	}{
		{"nothing", nil, []string{"--addr", addr}, "set $COURIER_TOKEN"},
		{"environment", map[string]string{"COURIER_TOKEN": "good-token", "COURIER_ADDR": addr}, nil, ""},
		{"bad environment", map[string]string{"COURIER_TOKEN": "bad-token"}, []string{"--addr", addr}, "unknown bearer token"},
		{"flag beats environment", map[string]string{"COURIER_TOKEN": "bad-token"}, []string{"--addr", addr, "--token-file", filepath.Join(dir, "good.token")}, ""},
		{"profile file's default profile", map[string]string{"COURIER_CONFIG": profiles}, nil, ""},
		{"environment beats profile", map[string]string{"COURIER_CONFIG": profiles, "COURIER_TOKEN": "bad-token"}, nil, "unknown bearer token"},
		{"flag beats profile", nil, []string{"--config", profiles, "--token-file", filepath.Join(dir, "bad.token")}, "unknown bearer token"},
		{"profile by environment", map[string]string{"COURIER_CONFIG": profiles, "COURIER_PROFILE": "nokey"}, nil, "set $COURIER_TOKEN"},
		{"profile by flag", map[string]string{"COURIER_PROFILE": "dev"}, []string{"--config", profiles, "--profile", "nokey"}, "set $COURIER_TOKEN"},
		{"address: environment beats profile", map[string]string{"COURIER_CONFIG": profiles, "COURIER_ADDR": "127.0.0.1:1"}, nil, "cannot reach courierd at 127.0.0.1:1"},
		{"address: flag beats environment", map[string]string{"COURIER_CONFIG": profiles, "COURIER_ADDR": "127.0.0.1:1"}, []string{"--addr", addr}, ""},
		{"unknown profile", nil, []string{"--config", profiles, "--profile", "prod"}, `profile "prod" is not in the profile file; its profiles are dev, nokey`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := cliEnv(t, c.env, append(c.args, "list")...)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("got %v\n%s", err, out)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error containing %q\n%s", err, c.want, out)
			case c.want == "" && !strings.Contains(out, "ID  TYPE"):
				t.Fatalf("list printed %q", out)
			}
		})
	}

	bad := filepath.Join(dir, "typo.yaml")
	writeFile(t, bad, "profiles:\n  dev: {adress: x}\n")
	if _, err := cliEnv(t, nil, "--config", bad, "list"); err == nil || !strings.Contains(err.Error(), `unknown field "adress"`) {
		t.Fatalf("a misspelt profile field: %v", err)
	}
	if _, err := cliEnv(t, nil, "--config", filepath.Join(dir, "none.yaml"), "list"); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Fatalf("a missing profile file named by --config: %v", err)
	}
}

// TestMTLS: with the CA, a client certificate and the server name, from
// flags or from a profile (paths relative to the profile file), the CLI
// reaches a TLS server as the certificate's identity; without the client
// certificate it is refused.
func TestMTLS(t *testing.T) {
	addr, dir := securedServer(t, true)
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cli.pem"), filepath.Join(dir, "cli-key.pem")
	tlsFlags := []string{"--addr", addr, "--ca-file", ca, "--server-name", "courier.test"}
	if out, err := cliEnv(t, nil, append(tlsFlags, "--cert-file", cert, "--key-file", key, "list")...); err != nil {
		t.Fatalf("mTLS by flags: %v\n%s", err, out)
	}
	if out, err := cliEnv(t, nil, append(tlsFlags, "list")...); err == nil || !strings.Contains(err.Error(), "needs credentials") {
		t.Fatalf("TLS without a client certificate: %v\n%s", err, out)
	}
	if out, err := cliEnv(t, nil, "--addr", addr, "--ca-file", ca, "list"); err == nil || !strings.Contains(err.Error(), "TLS with courierd") || !strings.Contains(err.Error(), "--server-name") {
		t.Fatalf("TLS to an address the certificate does not name, without --server-name: %v\n%s", err, out)
	}
	profiles := filepath.Join(dir, "config.yaml")
	writeFile(t, profiles, fmt.Sprintf("profiles:\n  prod: {addr: %q, caFile: ca.pem, certFile: cli.pem, keyFile: cli-key.pem, serverName: courier.test}\n", addr))
	if out, err := cliEnv(t, map[string]string{"COURIER_PROFILE": "prod", "COURIER_CONFIG": profiles}, "-o", "json", "list"); err != nil || !strings.HasPrefix(out, "{") {
		t.Fatalf("mTLS by profile: %v\n%s", err, out)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writePKI writes a CA (ca.pem), a server certificate for courier.test
// (server.pem, server-key.pem) and a client certificate for cli-user
// (cli.pem, cli-key.pem) into dir.
func writePKI(t *testing.T, dir string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "courier CLI test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	writePEMFile(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	for i, c := range []struct {
		name  string
		tmpl  x509.Certificate
		usage x509.ExtKeyUsage
	}{
		{"server", x509.Certificate{Subject: pkix.Name{CommonName: "courier.test"}, DNSNames: []string{"courier.test"}}, x509.ExtKeyUsageServerAuth},
		{"cli", x509.Certificate{Subject: pkix.Name{CommonName: "cli-user"}}, x509.ExtKeyUsageClientAuth},
	} {
		key := newKey()
		tmpl := c.tmpl
		tmpl.SerialNumber = big.NewInt(int64(i + 2))
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		tmpl.KeyUsage, tmpl.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{c.usage}
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEMFile(t, filepath.Join(dir, c.name+".pem"), "CERTIFICATE", der)
		writePEMFile(t, filepath.Join(dir, c.name+"-key.pem"), "EC PRIVATE KEY", keyDER)
	}
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestVersionAndCompletion: version (text, JSON, --version), the shell
// completion scripts, and completions of flag values.
func TestVersionAndCompletion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := cli(t, args...)
		if err != nil || !strings.HasPrefix(out, "courier ") || !strings.Contains(out, "go1.") {
			t.Errorf("courier %v: %q %v", args, out, err)
		}
	}
	out, err := cli(t, "-o", "json", "version")
	var v versionInfo
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("version -o json: %q %v", out, err)
	}
	for shell, want := range map[string]string{"bash": "__start_courier", "zsh": "#compdef courier", "fish": "complete -c courier", "powershell": "Register-ArgumentCompleter"} {
		out, err := cli(t, "completion", shell)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("completion %s: %v, output lacks %q", shell, err, want)
		}
	}
	out, err = cli(t, "__complete", "list", "--state", "")
	if err != nil || !strings.Contains(out, "QUEUED\nRUNNING\nSUCCEEDED\nFAILED\nCANCELLED\n") {
		t.Errorf("completing --state: %q %v", out, err)
	}
	out, err = cli(t, "__complete", "-o", "")
	if err != nil || !strings.Contains(out, "text\njson\n") {
		t.Errorf("completing -o: %q %v", out, err)
	}
}

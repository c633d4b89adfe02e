package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/client"
)

// PKI is a throwaway CA with a server certificate for 127.0.0.1, and a
// rogue CA, for tests of TLS and mTLS.
type PKI struct {
	Dir        string
	CAFile     string // the CA's certificate (PEM)
	ServerCert string // the server's certificate for 127.0.0.1
	ServerKey  string

	ca       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	rogueCA  *x509.Certificate
	rogueKey *ecdsa.PrivateKey
	serial   int64
}

// NewPKI makes a PKI in a temporary directory.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{Dir: t.TempDir()}
	p.ca, p.caKey = p.selfSigned(t, "courier test CA")
	p.rogueCA, p.rogueKey = p.selfSigned(t, "rogue CA")
	p.CAFile = filepath.Join(p.Dir, "ca.pem")
	writePEM(t, p.CAFile, "CERTIFICATE", p.ca.Raw)
	p.ServerCert, p.ServerKey = p.issue(t, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "courier server"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, p.ca, p.caKey)
	return p
}

func (p *PKI) selfSigned(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// issue signs tmpl with the given CA and writes cert and key files.
func (p *PKI) issue(t testing.TB, name string, tmpl *x509.Certificate, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl.SerialNumber = big.NewInt(p.serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.Dir, name+".pem"), filepath.Join(p.Dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

// Client issues a client certificate with the given SPIFFE ID and returns
// a client.Config that trusts the CA and presents it. A rogue certificate
// is signed by another CA (a TLS client does not even send it, since the
// server names its acceptable CAs); a serverOnly one by the right CA but
// not for client auth (sent, and refused).
func (p *PKI) Client(t testing.TB, name, spiffe string, rogue, serverOnly bool) client.Config {
	t.Helper()
	u, _ := url.Parse(spiffe)
	ca, key := p.ca, p.caKey
	if rogue {
		ca, key = p.rogueCA, p.rogueKey
	}
	usage := x509.ExtKeyUsageClientAuth
	if serverOnly {
		usage = x509.ExtKeyUsageServerAuth
	}
	cert, k := p.issue(t, name, &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, URIs: []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}, ca, key)
	return client.Config{CAFile: p.CAFile, CertFile: cert, KeyFile: k}
}

// HTTPClient is an HTTPS client with cfg's CA and client certificate (the
// TLS material of a Client config); cfg.Token is not used.
func HTTPClient(t testing.TB, cfg client.Config) *http.Client {
	t.Helper()
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pemBytes, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.RootCAs = x509.NewCertPool()
		tc.RootCAs.AppendCertsFromPEM(pemBytes)
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TokenFile writes a token file (backend.TokenFile) with an entry per
// token: entries maps the token to its identity and its roles, written as
// a comma-separated list ("reader, writer").
func TokenFile(t testing.TB, entries map[string][2]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	for token, v := range entries {
		sum := sha256.Sum256([]byte(token))
		b.WriteString("  - sha256: " + hex.EncodeToString(sum[:]) + "\n    identity: " + v[0] + "\n    roles: [" + v[1] + "]\n")
	}
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

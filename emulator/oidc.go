package emulator

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Push subscriptions with an oidc_token get, as from the real service, an
// "Authorization: Bearer JWT" header: an RS256 ID token whose claims are
// iss https://accounts.google.com, aud (the configured audience, else the
// push endpoint), email (the service account), email_verified, sub and azp
// (a stable numeric ID derived from the email), iat and exp (one hour).
// The key is the emulator's own, made on first use (kept in DataDir, when
// there is one, so tokens verify across restarts); its public half is
// served as a JSON Web Key Set at Server.JWKSURL.

// signer holds the emulator's token-signing key.
type signer struct {
	dir  string // DataDir, or ""
	once sync.Once
	key  *rsa.PrivateKey
	kid  string
	set  []byte // the JWKS document
	err  error
}

const keyFile = "oidc-key.pem"

func newSigner(dir string) *signer { return &signer{dir: dir} }

func (s *signer) load() error {
	s.once.Do(func() {
		var path string
		if s.dir != "" {
			path = filepath.Join(s.dir, keyFile)
			if b, err := os.ReadFile(path); err == nil {
				if blk, _ := pem.Decode(b); blk != nil {
					if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
						s.key = k
					}
				}
				if s.key == nil {
					s.err = fmt.Errorf("emulator: %s holds no RSA private key; delete it and the emulator makes a new one", path)
					return
				}
			}
		}
		if s.key == nil {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				s.err = fmt.Errorf("emulator: making the OIDC signing key: %w", err)
				return
			}
			s.key = k
			if path != "" {
				b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
				if err := os.WriteFile(path, b, 0o600); err != nil {
					s.err = fmt.Errorf("emulator: keeping the OIDC signing key in %s: %w", path, err)
					return
				}
			}
		}
		pub := &s.key.PublicKey
		der := x509.MarshalPKCS1PublicKey(pub)
		sum := sha256.Sum256(der)
		s.kid = fmt.Sprintf("%x", sum[:20])
		b64 := base64.RawURLEncoding.EncodeToString
		s.set, _ = json.Marshal(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "alg": "RS256", "use": "sig", "kid": s.kid,
			"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
		}}})
	})
	return s.err
}

// jwks returns the JSON Web Key Set document.
func (s *signer) jwks() []byte {
	if s.load() != nil {
		return nil
	}
	return s.set
}

func (s *signer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	if err := s.load(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(s.set)
}

// token returns a signed ID token for the service account email and
// audience, issued at now.
func (s *signer) token(email, audience string, now time.Time) (string, error) {
	if err := s.load(); err != nil {
		return "", err
	}
	h := fnv.New64a()
	h.Write([]byte(email))
	sub := "1" + fmt.Sprintf("%020d", h.Sum64())
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": s.kid, "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"iss": "https://accounts.google.com", "aud": audience, "azp": sub, "sub": sub,
		"email": email, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	b64 := base64.RawURLEncoding.EncodeToString
	signing := b64(header) + "." + b64(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("emulator: signing an OIDC token: %w", err)
	}
	return signing + "." + b64(sig), nil
}

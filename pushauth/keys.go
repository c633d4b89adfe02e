package pushauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySet is the cached JSON Web Key Set at url.
type keySet struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	now        func() time.Time

	mu      sync.Mutex // held while fetching: one fetch at a time
	set     *jose.JSONWebKeySet
	expires time.Time // when set must be fetched again
	fetched time.Time // the last fetch, successful or not
	lastErr error
}

// key returns the signing key kid: from the cached set while it is fresh,
// else after fetching the set again (at most once per minRefresh). A set
// that cannot be fetched again is used stale rather than refusing every
// push while its server is away.
func (s *keySet) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	k := s.lookup(kid)
	if k != nil && now.Before(s.expires) {
		return k, nil
	}
	if s.set == nil || now.Sub(s.fetched) >= s.minRefresh {
		if err := s.fetch(ctx, now); err != nil && s.set == nil {
			return nil, err
		}
		k = s.lookup(kid)
	}
	if k == nil {
		if s.lastErr != nil {
			return nil, fmt.Errorf("%w: no key %q in the key set at %s (fetching it again failed: %v)", ErrInvalidToken, kid, s.url, s.lastErr)
		}
		return nil, fmt.Errorf("%w: no key %q in the key set at %s", ErrInvalidToken, kid, s.url)
	}
	return k, nil
}

func (s *keySet) lookup(kid string) *jose.JSONWebKey {
	if s.set == nil {
		return nil
	}
	for _, k := range s.set.Key(kid) {
		if k.Use == "" || k.Use == "sig" {
			return &k
		}
	}
	return nil
}

// fetch gets the key set; on success it replaces the cached one.
func (s *keySet) fetch(ctx context.Context, now time.Time) (err error) {
	s.fetched = now
	defer func() { s.lastErr = err }()
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, s.url, nil)
	if err != nil {
		return fmt.Errorf("pushauth: fetching the key set at %s: %w", s.url, err)
	}
	res, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("pushauth: fetching the key set at %s: %w", s.url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("pushauth: reading the key set at %s: %w", s.url, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("pushauth: fetching the key set at %s: %s", s.url, res.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("pushauth: the key set at %s is not a JSON Web Key Set: %w", s.url, err)
	}
	if len(set.Keys) == 0 {
		return fmt.Errorf("pushauth: the key set at %s has no keys", s.url)
	}
	s.set = &set
	s.expires = now.Add(min(max(maxAge(res.Header.Get("Cache-Control")), s.minRefresh), maxKeysMaxAge))
	return nil
}

// maxAge reads max-age from a Cache-Control header: DefaultKeysMaxAge when
// there is none (no-store and no-cache count as 0).
func maxAge(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "no-store" || d == "no-cache" {
			return 0
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return DefaultKeysMaxAge
}

package client_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/courierq/courier/client"
)

func TestPlaintextOnlyToLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8005", "localhost:8005", "[::1]:8005"} {
		conn, err := client.Dial(addr, client.Config{Token: "t"})
		if err != nil {
			t.Errorf("Dial(%s) plaintext: %v", addr, err)
			continue
		}
		conn.Close()
	}
	for _, addr := range []string{"10.0.0.1:8005", "courier.internal:443", "0.0.0.0:8005"} {
		_, err := client.Dial(addr, client.Config{})
		if !errors.Is(err, client.ErrInsecure) || !strings.Contains(err.Error(), "TLS") {
			t.Errorf("Dial(%s) plaintext: %v, want ErrInsecure saying to configure TLS", addr, err)
		}
		conn, err := client.Dial(addr, client.Config{TLS: true, Token: "t"})
		if err != nil {
			t.Errorf("Dial(%s) with TLS: %v", addr, err)
			continue
		}
		conn.Close()
	}
}

func TestConfigErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		cfg  client.Config
		want string
	}{
		{client.Config{CAFile: empty}, "no PEM certificates"},
		{client.Config{CertFile: "c.pem"}, "both certFile and keyFile"},
		{client.Config{TokenFile: "/nonexistent/token"}, "token file"},
	} {
		if _, err := client.Dial("127.0.0.1:1", tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Dial with %+v: %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := client.Dial("nohost", client.Config{}); err == nil {
		t.Error("Dial without a port: want an error")
	}
}

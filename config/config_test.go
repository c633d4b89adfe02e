package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/courierq/courier/config"
)

func TestDemoConfig(t *testing.T) {
	c, err := config.Parse(config.Demo)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPC.Addr != "127.0.0.1:8005" || !c.GRPC.DevMode || c.HTTP.Addr != "127.0.0.1:8006" {
		t.Fatalf("demo config: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"grpc:\n  adr: 127.0.0.1:1\n", `unknown field "adr"`},
		{"grpc:\n  addr: 0.0.0.0:8005\n  devMode: true\n", "grpc.addr"},
		{"grpc:\n  devMode: true\nhttp:\n  addr: 10.0.0.1:80\n", "http.addr"},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: maybe\n", "http.dashboard.mode"},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: {readRole: [x]}\n", `unknown field "readRole"`},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: {readRoles: [\"\"]}\n", "http.dashboard.readRoles"},
	} {
		_, err := config.Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
	_, err := config.Parse([]byte("grpc:\n  addr: 0.0.0.0:8005\n  devMode: true\n"))
	var ve *config.ValidationError
	if !errors.As(err, &ve) || ve.Field != "grpc.addr" {
		t.Errorf("want a *ValidationError for grpc.addr, got %v", err)
	}
}

func TestDashboardForms(t *testing.T) {
	for _, tc := range []struct {
		doc   string
		off   bool
		roles []string
	}{
		{"grpc:\n  devMode: true\n", false, nil},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: \"off\"\n", true, nil},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: \"on\"\n", false, nil},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard:\n    readRoles: [viewer, operator]\n", false, []string{"viewer", "operator"}},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: {mode: \"off\"}\n", true, nil},
	} {
		c, err := config.Parse([]byte("pubsub:\n  emulator: embedded\n" + tc.doc))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.doc, err)
			continue
		}
		if c.HTTP.Dashboard.Off() != tc.off || strings.Join(c.HTTP.Dashboard.ReadRoles, ",") != strings.Join(tc.roles, ",") {
			t.Errorf("Parse(%q): dashboard %+v, want off=%v roles %v", tc.doc, c.HTTP.Dashboard, tc.off, tc.roles)
		}
	}
}

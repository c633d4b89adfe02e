package wire_test

import (
	"strings"
	"testing"

	"github.com/courierq/courier/wire"
)

func TestNamingTopic(t *testing.T) {
	for _, tc := range []struct {
		name    string
		naming  wire.Naming
		typ     string
		want    string
		wantErr string
	}{
		{"default rule", wire.Naming{}, "courier.demo.v1.Echo", "courier-demo-v1-Echo", ""},
		{"prefix", wire.Naming{Prefix: "staging-"}, "courier.demo.v1.Echo", "staging-courier-demo-v1-Echo", ""},
		{"override", wire.Naming{Topics: map[string]string{"courier.demo.v1.Echo": "echoes"}}, "courier.demo.v1.Echo", "echoes", ""},
		{"goog prefix rejected", wire.Naming{}, "google.protobuf.Empty", "", "goog"},
		{"goog fixed by prefix", wire.Naming{Prefix: "x-"}, "google.protobuf.Empty", "x-google-protobuf-Empty", ""},
		{"bad override", wire.Naming{Topics: map[string]string{"a.B": "1bad"}}, "a.B", "", "not a valid Pub/Sub ID"},
		{"too short", wire.Naming{}, "A", "", "3..255"},
		{"too long", wire.Naming{}, "a." + strings.Repeat("x", 300), "", "3..255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.naming.Topic(tc.typ)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "wire: ") {
					t.Fatalf("Topic(%q) = %q, %v; want an error containing %q", tc.typ, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Topic(%q) = %q, %v; want %q", tc.typ, got, err, tc.want)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	got := wire.Labels(map[string]string{"courier-label-team": "pay", "ce-id": "x"})
	if len(got) != 1 || got["team"] != "pay" {
		t.Fatalf("Labels = %v", got)
	}
}

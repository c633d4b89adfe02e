package courier_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/courierq/courier"
	"github.com/courierq/courier/config"
)

// TestJSONLogHasCloudLoggingFields: log.format json writes one JSON object
// a line with severity and message, as Cloud Logging reads them, at and
// above log.level.
func TestJSONLogHasCloudLoggingFields(t *testing.T) {
	var buf bytes.Buffer
	l, err := courier.NewLogger(&buf, config.Log{Format: "json", Level: "info"})
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("not shown")
	l.Info("started", "addr", "127.0.0.1:8005")
	l.Warn("careful")
	l.Error("failed", "err", "boom")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []struct{ severity, message string }{{"INFO", "started"}, {"WARNING", "careful"}, {"ERROR", "failed"}}
	if len(lines) != len(want) {
		t.Fatalf("log lines: %q", lines)
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		if m["severity"] != want[i].severity || m["message"] != want[i].message || m["time"] == nil || m["level"] != nil || m["msg"] != nil {
			t.Errorf("line %q: want severity %s, message %q, a time and no level/msg", line, want[i].severity, want[i].message)
		}
	}
	if !strings.Contains(lines[0], `"addr":"127.0.0.1:8005"`) {
		t.Errorf("attributes are kept: %s", lines[0])
	}

	buf.Reset()
	l, _ = courier.NewLogger(&buf, config.Log{Level: "debug"})
	l.Debug("shown")
	if !strings.HasPrefix(buf.String(), "time=") || !strings.Contains(buf.String(), "level=DEBUG msg=shown") {
		t.Errorf("text log: %q", buf.String())
	}
	if _, err := courier.NewLogger(&buf, config.Log{Format: "xml"}); err == nil || !strings.Contains(err.Error(), "log.format") {
		t.Errorf("an unknown format: %v", err)
	}
}

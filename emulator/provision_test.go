package emulator_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/courierq/courier/emulator"
)

func TestParseResourcesErrors(t *testing.T) {
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "project: p\ntopic: []\n", `unknown field "topic"`},
		{"short name without project", "topics:\n  - name: t1\n", `topic "t1" has no project`},
		{"topic without name", "project: p\ntopics:\n  - labels: {a: b}\n", "topics[0]: name is missing"},
		{"unknown topic field", "project: p\ntopics:\n  - name: t1\n    retention: 1h\n", `topics[0]: unknown field "retention"`},
		{"subscription of another topic", "project: p\ntopics:\n  - name: t1\n    subscriptions:\n      - {name: s1, topic: projects/p/topics/t2}\n", "differs from the topic it is listed under"},
		{"bad duration", "project: p\ntopics:\n  - name: t1\n    subscriptions:\n      - {name: s1, messageRetentionDuration: 1h}\n", "topics[0] (projects/p/topics/t1).subscriptions[0]"},
		{"missing definitionFile", "project: p\nschemas:\n  - {name: s1, type: AVRO, definitionFile: nope.avsc}\n", "schemas[0]: reading definitionFile"},
		{"not YAML", "project: [\n", "resources.yaml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := emulator.ParseResources([]byte(c.yaml), filepath.Join(t.TempDir(), "resources.yaml"))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, emulator.ErrConfig) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "resources.yaml") {
				t.Fatalf("error %q: want ErrConfig naming the file and saying %q", err, c.want)
			}
		})
	}
	r, err := emulator.LoadResources(filepath.Join("testdata", "provision", "pubsub.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Schemas) != 2 || !strings.Contains(r.Schemas[0].Definition, `"name": "Order"`) || len(r.Topics) != 3 || len(r.Subscriptions) != 3 {
		t.Fatalf("the example config gave %d schemas (first %q), %d topics, %d subscriptions", len(r.Schemas), r.Schemas[0].Definition, len(r.Topics), len(r.Subscriptions))
	}
	if got := r.Subscriptions[0].GetDeadLetterPolicy().GetDeadLetterTopic(); got != "projects/courier-config/topics/orders-dead" {
		t.Fatalf("dead-letter topic %q, want the full name", got)
	}
}

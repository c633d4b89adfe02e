package emulator_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestNodeClient drives Node's @google-cloud/pubsub against the standalone
// binary (started with --config testdata/provision/pubsub.yaml): create a
// topic and a subscription, publish, receive one message; create an Avro
// schema and a topic that validates JSON against it, see a conforming
// message arrive with the schema attributes and a non-conforming one
// refused with INVALID_ARGUMENT, there and on the provisioned schema topic.
// It needs `npm ci --prefix emulator/testdata/node` first; without
// node_modules it skips, unless CI=true.
func TestNodeClient(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@google-cloud", "pubsub")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s/node_modules is missing under CI=true; run `npm ci --prefix emulator/testdata/node`", dir)
		}
		t.Skipf("no %s/node_modules; run `npm ci --prefix emulator/testdata/node` to enable this test", dir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed, and CI=true")
		}
		t.Skip("node is not installed")
	}
	srv := runStandalone(t, "--config", filepath.Join("testdata", "provision", "pubsub.yaml"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "pubsub.js")
	cmd.Dir = dir
	// METADATA_SERVER_DETECTION=none stops the auth library probing for GCE.
	cmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+srv.addr, "METADATA_SERVER_DETECTION=none")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node pubsub.js: %v; stdout: %s", err, out)
	}
	type refusal struct {
		Code    int
		Message string
	}
	var got struct {
		Published, ID, Data string
		Attributes          map[string]string
		Topic, Subscription string
		Schema              struct {
			Name, GoodID string
			Received     struct {
				ID         string
				Attributes map[string]string
				Metadata   struct{ Name, Revision, Encoding string }
			}
			Bad, ProvisionedGood, ProvisionedBad *refusal
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	if got.Data != "hello from node" || got.Attributes["lang"] != "js" || got.ID == "" || got.ID != got.Published {
		t.Fatalf("node received %+v; want the message it published (%s) with data \"hello from node\" and lang=js", got, got.Published)
	}
	sc := got.Schema
	const invalidArgument = 3
	if sc.Bad == nil || sc.Bad.Code != invalidArgument {
		t.Fatalf("a non-conforming message published from node: %+v, want refused with INVALID_ARGUMENT (3)", sc.Bad)
	}
	if sc.Received.ID != sc.GoodID || sc.Received.Metadata.Name != sc.Name || sc.Received.Metadata.Encoding != "JSON" || sc.Received.Metadata.Revision == "" {
		t.Fatalf("node received %+v from the schema topic; want message %s with the schema's name, revision and encoding JSON (schema %s)", sc.Received, sc.GoodID, sc.Name)
	}
	if sc.ProvisionedGood != nil || sc.ProvisionedBad == nil || sc.ProvisionedBad.Code != invalidArgument {
		t.Fatalf("publishing from node to the provisioned schema topic: good %+v, bad %+v; want the good accepted and the bad refused with INVALID_ARGUMENT", sc.ProvisionedGood, sc.ProvisionedBad)
	}
	t.Logf("node saw the non-conforming message refused: %s", sc.Bad.Message)
}

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
// binary: create a topic and a subscription, publish, receive one message.
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
	srv := runStandalone(t)
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
	var got struct {
		Published, ID, Data string
		Attributes          map[string]string
		Topic, Subscription string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	if got.Data != "hello from node" || got.Attributes["lang"] != "js" || got.ID == "" || got.ID != got.Published {
		t.Fatalf("node received %+v; want the message it published (%s) with data \"hello from node\" and lang=js", got, got.Published)
	}
}

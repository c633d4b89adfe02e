package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestExampleRuns builds the example as a user would and runs it: its job
// reaches SUCCEEDED and the decoded result is printed.
func TestExampleRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "wordcount")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	out, err := exec.CommandContext(ctx, bin, "the quick brown fox jumps").CombinedOutput()
	if err != nil {
		t.Fatalf("wordcount: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`^job \S+ SUCCEEDED: 5 words, the longest is "quick"\n$`).Match(out) {
		t.Fatalf("wordcount printed %q, want the job SUCCEEDED with 5 words and the longest one", out)
	}
}

package main

import (
	"debug/elf"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerBuildCommand returns the go build command of the Dockerfile's build
// stage, with its output directory (/out/) replaced by out.
func dockerBuildCommand(t *testing.T, dockerfile, out string) string {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	// Join continued lines, then find the RUN line that builds courierd.
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "RUN ") || !strings.Contains(line, "go build") {
			continue
		}
		cmd := strings.TrimPrefix(line, "RUN ")
		cmd = regexp.MustCompile(`--mount=\S+\s+`).ReplaceAllString(cmd, "")
		cmd = strings.ReplaceAll(cmd, "/out/", out+"/")
		return strings.Join(strings.Fields(cmd), " ")
	}
	t.Fatalf("%s has no RUN line with go build", dockerfile)
	return ""
}

// TestContainerBuild: no container engine runs here, so this test does
// what the image's build stage does, in a clone of the repository (a
// build context with .git, as docker build of a clone has): it runs the
// Dockerfile's go build command as the golang image would (VCS stamping on)
// and checks that the binary is static, that --version names the module,
// the commit and CGO_ENABLED=0, and that it starts with the image's config
// (deploy/courierd.yaml) completed from the environment, logging JSON.
func TestContainerBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds courierd from a clone of the repository")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("git", "clone", "-q", root, src).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	head, err := exec.Command("git", "-C", src, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	outDir := t.TempDir()
	command := dockerBuildCommand(t, filepath.Join(src, "Dockerfile"), outDir)
	if !strings.Contains(command, "CGO_ENABLED=0 go build") {
		t.Fatalf("the build stage's command %q does not build with CGO_ENABLED=0", command)
	}
	build := exec.Command("sh", "-c", command)
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=auto") // as in the golang image (this machine sets -buildvcs=false)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", command, err, out)
	}
	bin := filepath.Join(outDir, "courierd")

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	libs, _ := f.ImportedLibraries()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary asks for a dynamic loader: not static")
		}
	}
	f.Close()
	if len(libs) > 0 {
		t.Errorf("the binary links %v: not static", libs)
	}

	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"module   github.com/courierq/courier", "CGO_ENABLED=0", "vcs      git " + strings.TrimSpace(string(head))} {
		if !strings.Contains(string(out), want) {
			t.Errorf("courierd --version:\n%s\nwant it to contain %q", out, want)
		}
	}

	// The image's command, in the image's working directory (writable), with
	// the environment completing deploy/courierd.yaml.
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	work := t.TempDir()
	cmd := exec.Command(bin, "--config", filepath.Join(src, "deploy", "courierd.yaml"))
	cmd.Dir = work
	cmd.Env = append(os.Environ(),
		"COURIER_GRPC_ADDR="+grpcAddr, "COURIER_HTTP_ADDR="+httpAddr,
		"COURIER_PUBSUB_EMULATOR=embedded", "COURIER_PUBSUB_PROJECT=container-test",
		"COURIER_STORE_DRIVER=sqlite", "COURIER_HANDLERS_DEMO=true",
		"COURIER_GRPC_POLICIES={courier.v1.JobService: {allowUnauthenticated: true}}")
	logPath := filepath.Join(work, "stderr.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	waitServing(t, grpcAddr)
	for _, path := range []string{"/healthz", "/readyz", "/v1/hello?name=container"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
	if _, err := os.Stat(filepath.Join(work, ".courier", "jobs.db")); err != nil {
		t.Errorf("the SQLite store is not in the working directory: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("courierd after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("courierd did not stop within 60s of SIGTERM")
	}

	// Its log is JSON lines with Cloud Logging's fields (log.format: json).
	logText, _ := os.ReadFile(logPath)
	sawStart := false
	for _, line := range strings.Split(strings.TrimSpace(string(logText)), "\n") {
		m := jsonLogLine(t, line)
		if m["severity"] == nil || m["message"] == nil {
			t.Errorf("log line without severity and message: %s", line)
		}
		sawStart = sawStart || m["message"] == "courierd: starting"
	}
	if !sawStart {
		t.Errorf("no \"courierd: starting\" line in the log:\n%s", logText)
	}
}

// jsonLogLine checks a line of a JSON log.
func jsonLogLine(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("log line %q is not JSON: %v", line, err)
	}
	return m
}

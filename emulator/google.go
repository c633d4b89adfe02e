package emulator

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// GoogleConfig configures StartGoogle. The zero value is valid.
type GoogleConfig struct {
	// SDKRoot is the gcloud SDK's root folder. "" means $CLOUDSDK_ROOT_DIR,
	// then /usr/lib/google-cloud-sdk, then what `gcloud info` says.
	SDKRoot string
	// Host to bind. "" means 127.0.0.1.
	Host string
	// Port to bind. 0 means a free port.
	Port int
	// StartTimeout bounds the wait for the emulator to answer. 0 means 60s.
	StartTimeout time.Duration
}

// GoogleEmulatorPath returns the path of Google's cloud-pubsub-emulator
// launcher script, or an error wrapping ErrNotInstalled that says how to
// install it.
func GoogleEmulatorPath(sdkRoot string) (string, error) {
	const rel = "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
	var roots []string
	if sdkRoot != "" {
		roots = append(roots, sdkRoot)
	} else {
		if r := os.Getenv("CLOUDSDK_ROOT_DIR"); r != "" {
			roots = append(roots, r)
		}
		roots = append(roots, "/usr/lib/google-cloud-sdk")
		if out, err := exec.Command("gcloud", "info", "--format=value(installation.sdk_root)").Output(); err == nil {
			if r := strings.TrimSpace(string(out)); r != "" {
				roots = append(roots, r)
			}
		}
	}
	for _, r := range roots {
		p := filepath.Join(r, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: looked for %s under %s; install it with `gcloud components install pubsub-emulator` (or Debian's google-cloud-cli-pubsub-emulator package), or set CLOUDSDK_ROOT_DIR",
		ErrNotInstalled, rel, strings.Join(roots, ", "))
}

// StartGoogle starts Google's Pub/Sub emulator as a child process and returns
// once it answers gRPC calls. Close kills it (and its JVM) and waits for it
// to exit. ctx bounds only the start.
func StartGoogle(ctx context.Context, cfg GoogleConfig) (*Server, error) {
	path, err := GoogleEmulatorPath(cfg.SDKRoot)
	if err != nil {
		return nil, err
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		if port, err = freePort(host); err != nil {
			return nil, err
		}
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))

	dataDir, err := os.MkdirTemp("", "google-pubsub-emulator-")
	if err != nil {
		return nil, fmt.Errorf("emulator: temp dir for Google's emulator: %w", err)
	}
	cmd := exec.Command(path, "--host="+host, "--port="+strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "CLOUDSDK_CORE_DISABLE_PROMPTS=1")
	cmd.Dir = dataDir
	var logs syncBuffer
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("emulator: starting %s: %w", path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		return os.RemoveAll(dataDir)
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := waitReady(ctx, addr, exited); err != nil {
		stop()
		return nil, fmt.Errorf("emulator: Google's emulator on %s did not become ready: %w; its output:\n%s", addr, err, logs.String())
	}
	return &Server{Addr: addr, Kind: KindGoogle, close: stop}, nil
}

// waitReady calls ListTopics until it answers, the process exits or ctx ends.
func waitReady(ctx context.Context, addr string, exited <-chan error) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pubsubpb.NewPublisherClient(conn)
	for {
		callCtx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := client.ListTopics(callCtx, &pubsubpb.ListTopicsRequest{Project: "projects/ready-check"}, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			return nil
		}
		select {
		case e := <-exited:
			return fmt.Errorf("process exited early: %v", e)
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort asks the kernel for a free TCP port on host.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("emulator: finding a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// TemporalCLIVersion is the Temporal CLI version scripts/temporal.sh builds.
const TemporalCLIVersion = "v1.5.1"

var (
	temporalOnce sync.Once
	temporalSrv  *TemporalServer
	temporalErr  error
)

// TemporalBin returns the Temporal CLI that scripts/temporal.sh builds:
// $COURIER_TEMPORAL_BIN when set, else its cache path
// ($HOME/.cache/courier/temporal/VERSION/temporal), else `temporal` on PATH.
// The error says how to get it.
func TemporalBin() (string, error) {
	if p := os.Getenv("COURIER_TEMPORAL_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("testenv: $COURIER_TEMPORAL_BIN is %q: %w", p, err)
		}
		return p, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "courier", "temporal", TemporalCLIVersion, "temporal")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	return "", errors.New("testenv: the Temporal CLI is not built; run scripts/temporal.sh (the first build takes minutes) or set $COURIER_TEMPORAL_BIN")
}

// TemporalServer is a Temporal dev server (`temporal server start-dev`)
// that this process started.
type TemporalServer struct {
	// HostPort is the frontend's gRPC address, e.g. "127.0.0.1:40123".
	HostPort string
	// Namespace is the namespace to use: "default", which start-dev creates.
	Namespace string

	cmd       *exec.Cmd
	log       *bytes.Buffer // the server's stdout and stderr, for errors
	exited    chan struct{}
	closeOnce sync.Once
}

// Temporal returns a Temporal dev server shared by the test binary, started
// on first use (Main stops it). Tests keep apart by using a task queue of
// their own. It skips the test (fails it under CI=true) when the CLI is
// missing.
func Temporal(t testing.TB) *TemporalServer {
	t.Helper()
	temporalOnce.Do(func() {
		bin, err := TemporalBin()
		if err != nil {
			temporalErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		temporalSrv, temporalErr = StartTemporal(ctx, bin)
	})
	if temporalErr != nil {
		Missing(t, "the Temporal dev server", temporalErr)
	}
	return temporalSrv
}

// TemporalClient returns a client of srv's namespace; t.Cleanup closes it.
func TemporalClient(t testing.TB, srv *TemporalServer) client.Client {
	t.Helper()
	c, err := client.Dial(srv.ClientOptions())
	if err != nil {
		t.Fatalf("testenv: dialling Temporal at %s: %v", srv.HostPort, err)
	}
	t.Cleanup(c.Close)
	return c
}

// ClientOptions are options for a client of the server's namespace, with
// the SDK's logs at warning level and above.
func (s *TemporalServer) ClientOptions() client.Options {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return client.Options{HostPort: s.HostPort, Namespace: s.Namespace, Logger: tlog.NewStructuredLogger(quiet)}
}

// StartTemporal starts `bin server start-dev` in memory (no database file,
// no UI) on a free loopback port, in a process group of its own, and waits
// until its frontend answers and its namespace exists, or ctx ends. Close
// stops it.
func StartTemporal(ctx context.Context, bin string) (*TemporalServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &TemporalServer{
		HostPort:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Namespace: "default",
		log:       &bytes.Buffer{},
		exited:    make(chan struct{}),
	}
	s.cmd = exec.Command(bin, "server", "start-dev",
		"--headless", "--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--log-level", "error", "--disable-config-file", "--disable-config-env")
	s.cmd.Stdout, s.cmd.Stderr = syncWriter{s}, syncWriter{s}
	// A group of its own, so Close stops everything it started; and killed
	// with the test binary should that die first.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("testenv: starting %s server start-dev: %w", bin, err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("testenv: Temporal dev server (%s) on %s did not come up: %w; its output:\n%s", bin, s.HostPort, err, s.output())
	}
	return s, nil
}

var logMu sync.Mutex

type syncWriter struct{ s *TemporalServer }

func (w syncWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	if w.s.log.Len() < 1<<20 {
		w.s.log.Write(p)
	}
	return len(p), nil
}

func (s *TemporalServer) output() string {
	logMu.Lock()
	defer logMu.Unlock()
	return s.log.String()
}

func (s *TemporalServer) waitReady(ctx context.Context) error {
	var last error
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("it exited (%v)", s.cmd.ProcessState)
		default:
		}
		if last = s.ping(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last check: %v", ctx.Err(), last)
		case <-s.exited:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ping checks that the frontend answers and the namespace is registered.
func (s *TemporalServer) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, s.ClientOptions())
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: s.Namespace})
	return err
}

// Close stops the server's process group (SIGTERM, then SIGKILL after 10s)
// and waits for it. It is idempotent.
func (s *TemporalServer) Close() {
	s.closeOnce.Do(func() {
		pgid := s.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.exited
		}
		// Children that outlived the leader, if any.
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

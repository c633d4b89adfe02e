package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	database "cloud.google.com/go/spanner/admin/database/apiv1"
	"cloud.google.com/go/spanner/admin/database/apiv1/databasepb"
	instance "cloud.google.com/go/spanner/admin/instance/apiv1"
	"cloud.google.com/go/spanner/admin/instance/apiv1/instancepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// SpannerProject and SpannerInstance hold the databases SpannerDatabase
// creates on the emulator.
const (
	SpannerProject  = "courier-test"
	SpannerInstance = "courier"
)

var (
	spannerOnce sync.Once
	spannerAddr string
	spannerStop func()
	spannerErr  error
	dbSeq       atomic.Int64
)

// SpannerEmulatorPath returns the path of the Cloud Spanner emulator
// (emulator_main of the gcloud SDK's cloud_spanner_emulator component).
func SpannerEmulatorPath() (string, error) {
	const rel = "bin/cloud_spanner_emulator/emulator_main"
	var roots []string
	if r := os.Getenv("CLOUDSDK_ROOT_DIR"); r != "" {
		roots = append(roots, r)
	}
	roots = append(roots, "/usr/lib/google-cloud-sdk")
	if out, err := exec.Command("gcloud", "info", "--format=value(installation.sdk_root)").Output(); err == nil {
		if r := strings.TrimSpace(string(out)); r != "" {
			roots = append(roots, r)
		}
	}
	for _, r := range roots {
		p := filepath.Join(r, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s under %s: install it with `gcloud components install cloud-spanner-emulator` (or Debian's google-cloud-cli-spanner-emulator package), or set CLOUDSDK_ROOT_DIR",
		rel, strings.Join(roots, ", "))
}

// SpannerEmulator returns the address of the Cloud Spanner emulator, started on
// first use and shared by the test binary (Main stops it), and sets
// SPANNER_EMULATOR_HOST to it for the process, so that Spanner clients use
// it. An emulator already named by SPANNER_EMULATOR_HOST is used as it is.
func SpannerEmulator(t testing.TB) string {
	t.Helper()
	spannerOnce.Do(func() {
		if addr := os.Getenv("SPANNER_EMULATOR_HOST"); addr != "" {
			spannerAddr = addr
			return
		}
		spannerAddr, spannerStop, spannerErr = startSpanner()
		if spannerErr == nil {
			os.Setenv("SPANNER_EMULATOR_HOST", spannerAddr)
		}
	})
	if spannerErr != nil {
		Missing(t, "the Cloud Spanner emulator", spannerErr)
	}
	return spannerAddr
}

func startSpanner() (string, func(), error) {
	path, err := SpannerEmulatorPath()
	if err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(path, "--host_port", addr)
	var logs strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if logs.Len() < 1<<16 {
			logs.Write(p)
		}
		return len(p), nil
	})
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, stop, nil
		}
		select {
		case e := <-exited:
			mu.Lock()
			defer mu.Unlock()
			return "", nil, fmt.Errorf("%s exited early (%v); its output:\n%s", path, e, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("%s did not listen on %s within 30s", path, addr)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var instanceOnce sync.Once
var instanceErr error

// SpannerDatabase starts the emulator if needed (skipping, or failing under
// CI=true, when it is missing) and creates an empty database of its own,
// which cleanup drops; it returns its full name,
// projects/P/instances/I/databases/D.
func SpannerDatabase(t testing.TB) string {
	t.Helper()
	SpannerEmulator(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	instanceOnce.Do(func() {
		ic, err := instance.NewInstanceAdminClient(ctx)
		if err != nil {
			instanceErr = err
			return
		}
		defer ic.Close()
		op, err := ic.CreateInstance(ctx, &instancepb.CreateInstanceRequest{
			Parent:     "projects/" + SpannerProject,
			InstanceId: SpannerInstance,
			Instance: &instancepb.Instance{
				Config:      "projects/" + SpannerProject + "/instanceConfigs/emulator-config",
				DisplayName: "courier tests",
				NodeCount:   1,
			},
		})
		if status.Code(err) == codes.AlreadyExists {
			return
		}
		if err == nil {
			_, err = op.Wait(ctx)
		}
		instanceErr = err
	})
	if instanceErr != nil {
		t.Fatalf("testenv: create Spanner instance %s on the emulator: %v", SpannerInstance, instanceErr)
	}
	dc, err := database.NewDatabaseAdminClient(ctx)
	if err != nil {
		t.Fatalf("testenv: Spanner database admin client: %v", err)
	}
	defer dc.Close()
	id := "t" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(dbSeq.Add(1), 10)
	parent := "projects/" + SpannerProject + "/instances/" + SpannerInstance
	op, err := dc.CreateDatabase(ctx, &databasepb.CreateDatabaseRequest{Parent: parent, CreateStatement: "CREATE DATABASE `" + id + "`"})
	if err == nil {
		_, err = op.Wait(ctx)
	}
	if err != nil {
		t.Fatalf("testenv: create Spanner database %s: %v", id, err)
	}
	name := parent + "/databases/" + id
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dc, err := database.NewDatabaseAdminClient(ctx)
		if err != nil {
			t.Errorf("drop Spanner database %s: %v", name, err)
			return
		}
		defer dc.Close()
		if err := dc.DropDatabase(ctx, &databasepb.DropDatabaseRequest{Database: name}); err != nil {
			t.Errorf("drop Spanner database %s: %v", name, err)
		}
	})
	return name
}

package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
)

// child is the CLI in a process of its own (this test binary, which runs
// main when COURIER_CLI_CHILD=1), with a clean environment.
func child(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	home := t.TempDir()
	cmd.Env = []string{"COURIER_CLI_CHILD=1", "HOME=" + home, "XDG_CONFIG_HOME=" + home, "PATH=" + os.Getenv("PATH")}
	return cmd
}

// childOutput runs the CLI as a child and returns its combined output.
func childOutput(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := child(t, args...).CombinedOutput()
	return string(out), err
}

// resizeFile is a .proto built at run time: courier.clitest.v1.Resize and
// ResizeResult. No binary links it; the test server registers it, so the
// CLI can learn it only through server reflection.
var resizeFile = func() protoreflect.FileDescriptor {
	str, i32 := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	field := func(name string, n int32, typ *descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(n), Type: typ, Label: opt}
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:    proto.String("courier/clitest/v1/resize.proto"),
		Package: proto.String("courier.clitest.v1"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Resize"), Field: []*descriptorpb.FieldDescriptorProto{field("image", 1, str), field("width", 2, i32)}},
			{Name: proto.String("ResizeResult"), Field: []*descriptorpb.FieldDescriptorProto{field("url", 1, str)}},
		},
	}, nil)
	if err != nil {
		panic(err)
	}
	return fd
}()

var registerResize sync.Once

// runtimeTypeServer serves a JobService that accepts courier.clitest.v1.Resize,
// a type built at run time, and whose server reflection describes it.
func runtimeTypeServer(t *testing.T) (string, jobs.Store) {
	t.Helper()
	registerResize.Do(func() {
		if _, err := protoregistry.GlobalTypes.FindMessageByName("courier.clitest.v1.Resize"); err == nil {
			t.Fatal("courier.clitest.v1.Resize is compiled into the test binary; the test needs a type that is not")
		}
		// The server's registries: reflection reads GlobalFiles, the
		// JobService resolves payloads in GlobalTypes. This process only.
		if err := protoregistry.GlobalFiles.RegisterFile(resizeFile); err != nil {
			t.Fatal(err)
		}
		for i := range resizeFile.Messages().Len() {
			if err := protoregistry.GlobalTypes.RegisterMessage(dynamicpb.NewMessageType(resizeFile.Messages().Get(i))); err != nil {
				t.Fatal(err)
			}
		}
	})
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: t.TempDir() + "/jobs.db"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	addr, _ := testenv.JobService(t, store, jobservice.TypeMap{"courier.clitest.v1.Resize": {MaxAttempts: 2}})
	return addr, store
}

// TestEnqueueTypeNotCompiledIn: a CLI process that links no
// courier.clitest.v1 code enqueues a Resize job, learning the type from the
// server's reflection; the server gets the right payload, and get shows the
// payload and result as JSON.
func TestEnqueueTypeNotCompiledIn(t *testing.T) {
	addr, store := runtimeTypeServer(t)
	out, err := childOutput(t, "--addr", addr, "enqueue", "courier.clitest.v1.Resize", `{"image":"cat.png","width":640}`, "--label", "team=img")
	if err != nil {
		t.Fatalf("enqueue: %v\n%s", err, out)
	}
	id := strings.TrimSpace(out)
	ctx := context.Background()
	j, err := store.Get(ctx, id)
	if err != nil {
		t.Fatalf("the job %q the CLI printed: %v", id, err)
	}
	payload := dynamicpb.NewMessage(resizeFile.Messages().ByName("Resize"))
	if err := proto.Unmarshal(j.Payload, payload); err != nil {
		t.Fatal(err)
	}
	if j.Type != "courier.clitest.v1.Resize" || payload.Get(payload.Descriptor().Fields().ByName("image")).String() != "cat.png" ||
		payload.Get(payload.Descriptor().Fields().ByName("width")).Int() != 640 || j.Labels["team"] != "img" {
		t.Fatalf("stored job %+v with payload %v", j, payload)
	}

	result := dynamicpb.NewMessage(resizeFile.Messages().ByName("ResizeResult"))
	result.Set(result.Descriptor().Fields().ByName("url"), protoreflect.ValueOfString("https://img.example/cat-640.png"))
	res, _ := proto.Marshal(result)
	if _, err := store.Start(ctx, jobs.StartParams{ID: id, Attempt: 1, Lease: "test", LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Succeed(ctx, jobs.SucceedParams{ID: id, ResultType: "courier.clitest.v1.ResizeResult", Result: res}); err != nil {
		t.Fatal(err)
	}
	out, err = childOutput(t, "--addr", addr, "get", id)
	if err != nil || !strings.Contains(out, `payload:   {"image":"cat.png","width":640}`) || !strings.Contains(out, `result:    {"url":"https://img.example/cat-640.png"}`) {
		t.Fatalf("get: %v\n%s", err, out)
	}
	out, err = childOutput(t, "--addr", addr, "-o", "json", "get", id)
	if err != nil || !strings.Contains(out, `"@type": "type.googleapis.com/courier.clitest.v1.Resize"`) || !strings.Contains(out, `"width": 640`) {
		t.Fatalf("get -o json: %v\n%s", err, out)
	}
	out, err = childOutput(t, "--addr", addr, "enqueue", "courier.clitest.v1.Resise", `{}`)
	if err == nil || !strings.Contains(out, `unknown message type "courier.clitest.v1.Resise"`) {
		t.Fatalf("a misspelt type: %v\n%s", err, out)
	}
	out, err = childOutput(t, "--addr", addr, "enqueue", "courier.clitest.v1.Resize", `{"widht":1}`)
	if err == nil || !strings.Contains(out, "not a valid courier.clitest.v1.Resize") || !strings.Contains(out, "widht") {
		t.Fatalf("a misspelt field: %v\n%s", err, out)
	}
}

// ptyOutput collects what a child writes to its pseudo-terminal and lets a
// test wait for a piece of it.
type ptyOutput struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on each write
	done    chan struct{} // closed at EOF
}

func readPTY(f *os.File) *ptyOutput {
	o := &ptyOutput{changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(o.done)
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			close(o.changed)
			o.changed = make(chan struct{})
			o.mu.Unlock()
			if err != nil {
				return // EIO once the child has exited
			}
		}
	}()
	return o
}

// waitFor waits until the output contains s.
func (o *ptyOutput) waitFor(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		o.mu.Lock()
		has, changed := strings.Contains(o.buf.String(), s), o.changed
		o.mu.Unlock()
		if has {
			return
		}
		select {
		case <-changed:
		case <-o.done:
			t.Fatalf("output ended without %q:\n%q", s, o.String())
		case <-timeout:
			t.Fatalf("no %q in the output after 30s:\n%q", s, o.String())
		}
	}
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// TestWatchOnATerminal runs watch under a pseudo-terminal 40 columns wide:
// the progress bar is redrawn in place, each drawing fits in the width, and
// a long progress message of multi-byte and double-width characters is
// cut at a character boundary, never inside one. Control characters in the
// message do not reach the terminal.
func TestWatchOnATerminal(t *testing.T) {
	addr, store := runtimeTypeServer(t)
	ctx := context.Background()
	j, _, err := store.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: "pty-1", Type: "courier.clitest.v1.Resize"}})
	if err != nil {
		t.Fatal(err)
	}
	cmd := child(t, "--addr", addr, "watch", j.ID)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 40, Rows: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := readPTY(f)
	out.waitFor(t, "QUEUED")
	if _, err := store.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "test", LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	msg := "画像を縮小しています、少々お待ちください — étape 2 sur 3\x1b[31m"
	if err := store.Progress(ctx, jobs.ProgressParams{ID: j.ID, Fraction: 0.5, Message: msg}); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, " 50%")
	if _, err := store.Succeed(ctx, jobs.SucceedParams{ID: j.ID}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch exited %v:\n%q", err, out.String())
	}
	<-out.done
	text := out.String()
	draws := strings.Split(text, "\r\x1b[K")
	if len(draws) < 4 { // before the first, then QUEUED, RUNNING, 50%, SUCCEEDED
		t.Fatalf("the bar was drawn %d times, want at least 3 redraws in place:\n%q", len(draws)-1, text)
	}
	var saw50 bool
	for _, d := range draws[1:] {
		bar, _, _ := strings.Cut(d, "\r\n") // the last drawing is followed by the job
		if w := displayWidth(bar); w > 39 {
			t.Errorf("a drawing is %d columns wide in a 40-column terminal: %q", w, bar)
		}
		if !utf8Valid(bar) {
			t.Errorf("a drawing cuts a character: %q", bar)
		}
		if strings.Contains(bar, "\x1b[31m") {
			t.Errorf("the progress message's escape sequence reached the terminal: %q", bar)
		}
		if strings.Contains(bar, " 50% RUNNING 画像を") && strings.HasSuffix(bar, "…") {
			saw50 = true
		}
	}
	if !saw50 {
		t.Errorf("no drawing shows 50%% RUNNING with the message cut to fit:\n%q", text)
	}
	if !strings.Contains(text, "state:     SUCCEEDED") {
		t.Errorf("the job is not printed at the end:\n%q", text)
	}
}

// TestWatchRedirected: with output to a file, watch writes one plain line
// per change and no terminal escape codes.
func TestWatchRedirected(t *testing.T) {
	addr, store := runtimeTypeServer(t)
	ctx := context.Background()
	j, _, err := store.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: "file-1", Type: "courier.clitest.v1.Resize"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "test", LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 9, Message: "too big"}); err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/watch.out"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	cmd := child(t, "--addr", addr, "watch", j.ID)
	cmd.Stdout, cmd.Stderr = f, io.Discard
	err = cmd.Run()
	f.Close()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("watch of a FAILED job exited %v, want status 3", err)
	}
	b, _ := os.ReadFile(path)
	if bytes.Contains(b, []byte("\x1b")) || bytes.Contains(b, []byte("\r")) {
		t.Fatalf("output to a file has terminal escape codes:\n%q", b)
	}
	if !bytes.Contains(b, []byte("file-1 FAILED attempt=1 progress=0%")) || !bytes.Contains(b, []byte("FailedPrecondition: too big")) {
		t.Fatalf("output to a file:\n%s", b)
	}
}

// TestTerminalDetection: /dev/null, a file and a pipe are not terminals
// (the old check took /dev/null, a character device, for one); a
// pseudo-terminal is, with its width.
func TestTerminalDetection(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	file, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for name, w := range map[string]io.Writer{"/dev/null": null, "a file": file, "a pipe": pw, "a buffer": &bytes.Buffer{}} {
		if _, ok := terminalWidth(w); ok {
			t.Errorf("%s is taken for a terminal", name)
		}
	}
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Cols: 57, Rows: 20}); err != nil {
		t.Fatal(err)
	}
	if cols, ok := terminalWidth(tty); !ok || cols != 57 {
		t.Fatalf("a pseudo-terminal 57 columns wide: %d, %v", cols, ok)
	}
}

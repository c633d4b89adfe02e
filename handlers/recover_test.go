package handlers

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	h := Recover(logger)(func(context.Context, *Request) (proto.Message, error) {
		panic("kaboom")
	})
	res, err := h(context.Background(), &Request{ID: "job-1", Type: "t"})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "kaboom" || res != nil {
		t.Fatalf("res, err = %v, %v; want nil and a PanicError", res, err)
	}
	if IsPermanent(err) {
		t.Fatal("a panic must be retryable")
	}
	out := logs.String()
	for _, want := range []string{"handler panicked", "job-1", "kaboom", "recover_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

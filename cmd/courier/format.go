package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// explain turns an RPC error into a message that says what to do.
func explain(addr string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("cannot reach courierd at %s (%s): is it running? `make run` starts the demo; --addr or $COURIER_ADDR points elsewhere", addr, st.Message())
	case codes.Unauthenticated:
		return fmt.Errorf("%s; pass --token-file or set $COURIER_TOKEN", st.Message())
	default:
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
}

// anyJSON renders an Any's message as compact protojson, or its type and
// size when the type is not compiled into this CLI.
func anyJSON(a *anypb.Any) string {
	if a == nil {
		return ""
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Sprintf("<%s, %d bytes>", a.MessageName(), len(a.Value))
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Sprintf("<%s: %v>", a.MessageName(), err)
	}
	return string(b)
}

func fmtTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format(time.RFC3339Nano)
}

// printJob prints a job as aligned "key: value" lines.
func printJob(w io.Writer, j *courierv1.Job) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-10s %s\n", k+":", v)
		}
	}
	line("id", j.GetId())
	line("type", j.GetType())
	line("state", j.GetState().String())
	line("attempt", fmt.Sprintf("%d of %d", j.GetAttempt(), j.GetMaxAttempts()))
	if p := j.GetProgress(); p != nil {
		line("progress", strings.TrimSpace(fmt.Sprintf("%3.0f%% %s", p.GetFraction()*100, p.GetMessage())))
	}
	line("payload", anyJSON(j.GetPayload()))
	line("result", anyJSON(j.GetResult()))
	if e := j.GetError(); e != nil {
		line("error", fmt.Sprintf("%s: %s", codes.Code(e.GetCode()), e.GetMessage()))
	}
	if len(j.GetLabels()) > 0 {
		keys := make([]string, 0, len(j.GetLabels()))
		for k := range j.GetLabels() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+j.GetLabels()[k])
		}
		line("labels", strings.Join(parts, ","))
	}
	line("key", j.GetIdempotencyKey())
	line("created", fmtTime(j.GetCreateTime()))
	if j.GetRunAfter() != nil {
		line("runAfter", fmtTime(j.GetRunAfter()))
	}
	if j.GetStartTime() != nil {
		line("started", fmtTime(j.GetStartTime()))
	}
	if j.GetEndTime() != nil {
		line("ended", fmtTime(j.GetEndTime()))
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar renders "[#####.....]  50% RUNNING message" in width columns.
func progressBar(j *courierv1.Job, width int) string {
	frac := j.GetProgress().GetFraction()
	if j.GetState() == courierv1.State_SUCCEEDED {
		frac = 1
	}
	frac = min(max(frac, 0), 1)
	const barLen = 24
	n := int(frac*barLen + 0.5)
	s := fmt.Sprintf("[%s%s] %3.0f%% %-9s %s", strings.Repeat("#", n), strings.Repeat(".", barLen-n), frac*100, j.GetState(), j.GetProgress().GetMessage())
	if width > 0 && len(s) > width {
		s = s[:width]
	}
	return s
}

// exitFor is the exit status for a job's final state.
func exitFor(j *courierv1.Job) error {
	switch j.GetState() {
	case courierv1.State_FAILED:
		return exitError{3}
	case courierv1.State_CANCELLED:
		return exitError{4}
	}
	return nil
}

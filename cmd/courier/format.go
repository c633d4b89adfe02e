package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
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
		if strings.Contains(st.Message(), "handshake") || strings.Contains(st.Message(), "certificate") {
			return fmt.Errorf("TLS with courierd at %s failed (%s): check --ca-file (the CA that signed its certificate), --server-name (a name its certificate holds, when the address is not one) and, for mTLS, --cert-file and --key-file", addr, st.Message())
		}
		return fmt.Errorf("cannot reach courierd at %s (%s): is it running? `make run` starts the demo; --addr, $COURIER_ADDR or a profile points elsewhere", addr, st.Message())
	case codes.Unauthenticated:
		return fmt.Errorf("%s; pass --token-file, set $COURIER_TOKEN, or use a profile with tokenFile", st.Message())
	default:
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
}

// anyJSON renders an Any's message as compact protojson, resolving its type
// through types (the server's, by reflection), or its type and size when it
// cannot.
func anyJSON(a *anypb.Any, types *types) string {
	if a == nil {
		return ""
	}
	m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: types})
	if err != nil {
		return fmt.Sprintf("<%s, %d bytes>", a.MessageName(), len(a.Value))
	}
	b, err := protojson.MarshalOptions{Resolver: types}.Marshal(m)
	if err != nil {
		return fmt.Sprintf("<%s: %v>", a.MessageName(), err)
	}
	// protojson varies its white space on purpose; print it stably.
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return string(b)
	}
	return out.String()
}

func fmtTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format(time.RFC3339Nano)
}

// printJob prints a job as aligned "key: value" lines.
func printJob(w io.Writer, j *courierv1.Job, types *types) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-10s %s\n", k+":", printable(v))
		}
	}
	line("id", j.GetId())
	line("type", j.GetType())
	line("state", j.GetState().String())
	line("attempt", fmt.Sprintf("%d of %d", j.GetAttempt(), j.GetMaxAttempts()))
	if p := j.GetProgress(); p != nil {
		line("progress", strings.TrimSpace(fmt.Sprintf("%3.0f%% %s", p.GetFraction()*100, p.GetMessage())))
	}
	line("payload", anyJSON(j.GetPayload(), types))
	line("result", anyJSON(j.GetResult(), types))
	if e := j.GetError(); e != nil {
		line("error", fmt.Sprintf("%s: %s", codes.Code(e.GetCode()), e.GetMessage()))
	}
	if labels := j.GetLabels(); len(labels) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			parts = append(parts, k+"="+labels[k])
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

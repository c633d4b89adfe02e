package publisher

import (
	"fmt"
	"strings"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/internal/clip"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/wire"
)

// Bounds on the attributes that differ from one publish of a job to the
// next. EncodedSize counts each at its bound, so the size it gives holds for
// every publish of the job: the API's check at enqueue and the relay's
// publish cannot disagree.
const (
	// MaxIDBytes bounds a job ID (ce-id); Publish refuses a longer one.
	MaxIDBytes = jobs.MaxIDBytes
	// MaxSourceBytes bounds Config.Source (ce-source); New refuses a longer one.
	MaxSourceBytes = 256
	// MaxTraceBytes is what EncodedSize reserves for the trace context
	// attributes (names and values): a traceparent (55 bytes) and a
	// tracestate of up to 512 bytes (the W3C trace context's propagation
	// size), each written twice: under the W3C names and the googclient_
	// ones the Pub/Sub clients read. A message whose own trace context is larger (a tracestate beyond
	// 512 bytes on a payload within about 1 KB of the limit) can still be
	// refused by Publish with its actual size.
	MaxTraceBytes = len(wire.AttrTraceparent) + 55 + len(wire.AttrGoogTraceparent) + 55 + len(wire.AttrTracestate) + 512 + len(wire.AttrGoogTracestate) + 512
)

// requestBytes is what the Pub/Sub client reserves beside a message in a
// publish request (cloud.google.com/go/pubsub/v2 caps a bundle at
// MaxPublishRequestBytes less the topic name field and 5 bytes): the name
// field at its longest ("projects/" + a 30-byte project + "/topics/" + a
// 255-byte topic ID) and the 5 bytes.
const requestBytes = 1 + 2 + len("projects/") + 30 + len("/topics/") + 255 + 5

// maxTime is the longest ce-time value: RFC 3339 with nanoseconds and a
// zone offset (Publish writes UTC, so "Z", but the bound costs 5 bytes).
const maxTimeBytes = len("2006-01-02T15:04:05.999999999+07:00")

// EncodedSize is the size counted against MaxMessageBytes for the message
// that publishes a job of type typ (full protobuf name) whose payload
// encodes to data, with labels: the encoded PubsubMessage (data, the
// CloudEvents attributes, one attribute per label), with the job ID and
// Config.Source at their bounds (MaxIDBytes, MaxSourceBytes) and the trace
// context at MaxTraceBytes, plus what the Pub/Sub client reserves beside a
// message in a publish request for the longest topic name. So a message of
// at most MaxMessageBytes by this count is sent whatever its ID, source,
// time, trace context and topic.
func EncodedSize(typ string, data []byte, labels map[string]string) int {
	m := &wire.Message{ID: strings.Repeat("i", MaxIDBytes), Type: typ, Source: strings.Repeat("s", MaxSourceBytes), Labels: labels, Data: data}
	attrs := m.Attributes()
	attrs[wire.AttrTime] = strings.Repeat("t", maxTimeBytes)
	// The trace context, as one attribute of the reserved size (its
	// encoding costs no more than the ones it stands for).
	attrs[strings.Repeat("r", len(wire.AttrTraceparent))] = strings.Repeat("r", MaxTraceBytes-len(wire.AttrTraceparent))
	return proto.Size(&pubsubpb.PubsubMessage{Data: data, Attributes: attrs}) + requestBytes
}

// CheckSize returns a *TooLargeError when EncodedSize of the job is over
// MaxMessageBytes, else nil. Publish applies it before sending, and
// courier.v1.JobService/EnqueueJob before recording a job, so that a job it
// accepts can be published.
func CheckSize(typ string, data []byte, labels map[string]string) error {
	if sizeBound(typ, data, labels) <= MaxMessageBytes {
		return nil // far below the limit: no need for the exact size
	}
	if size := EncodedSize(typ, data, labels); size > MaxMessageBytes {
		return &TooLargeError{Type: typ, Size: size, Limit: MaxMessageBytes}
	}
	return nil
}

// fixedBytes is EncodedSize of a message with no type, data or labels.
var fixedBytes = EncodedSize("", nil, nil)

// sizeBound is an upper bound of EncodedSize, cheap to compute: the fixed
// part, then the type counted in several attributes, the data, and each
// label with room for its attribute name's prefix and the encoding's tags
// and lengths.
func sizeBound(typ string, data []byte, labels map[string]string) int {
	n := fixedBytes + 1024 + 8*len(typ) + len(data) + 16
	for k, v := range labels {
		n += len(k) + len(v) + 128
	}
	return n
}

func checkID(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("publisher: job ID is %d bytes (it starts %q); the limit is %d bytes", len(id), clip.String(id), MaxIDBytes)
	}
	return nil
}

package wire_test

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	cepubsub "github.com/cloudevents/sdk-go/protocol/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/binding"

	"github.com/courierq/courier/wire"
)

func testMessage() *wire.Message {
	return &wire.Message{
		ID: "01a2b3c4", Type: "courier.demo.v1.Echo", Source: "//billing", Time: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
		Labels: map[string]string{"team": "pay"}, TraceParent: "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01", TraceState: "vendor=x",
		Data: []byte{0x0a, 0x02, 'h', 'i'},
	}
}

// TestCloudEventsSDKReadsAMessage: a courier message decodes with the
// CloudEvents Go SDK's Pub/Sub binding as the event it is.
func TestCloudEventsSDKReadsAMessage(t *testing.T) {
	m := testMessage()
	ev, err := binding.ToEvent(context.Background(), cepubsub.NewMessage(&pubsub.Message{Data: m.Data, Attributes: m.Attributes()}))
	if err != nil {
		t.Fatalf("the CloudEvents SDK cannot read a courier message: %v", err)
	}
	if ev.ID() != m.ID || ev.Type() != m.Type || ev.Source() != m.Source || ev.SpecVersion() != "1.0" ||
		ev.DataContentType() != "application/protobuf" ||
		!ev.Time().Equal(m.Time) || string(ev.Data()) != string(m.Data) {
		t.Fatalf("event %v, want the message's ID, type, source, time, content type and data", ev)
	}
	if err := ev.Validate(); err != nil {
		t.Fatalf("event does not validate: %v", err)
	}
}

func TestParseRoundTrip(t *testing.T) {
	m := testMessage()
	r := wire.Parse(m.Attributes())
	if r.ID != m.ID || r.Type != m.Type || r.Labels["team"] != "pay" || len(r.Labels) != 1 || r.TraceParent != m.TraceParent || r.TraceState != m.TraceState {
		t.Fatalf("Parse(Attributes()) = %+v, want the message's ID, type, labels and trace context", r)
	}
}

// TestParseReadsThePubSubClientsTraceContext: a message from a Pub/Sub
// client with OpenTelemetry tracing on carries googclient_traceparent only.
func TestParseReadsThePubSubClientsTraceContext(t *testing.T) {
	r := wire.Parse(map[string]string{"ce-type": "a.B", "googclient_traceparent": "00-aa-bb-01", "googclient_tracestate": "k=v"})
	if r.TraceParent != "00-aa-bb-01" || r.TraceState != "k=v" {
		t.Fatalf("Parse = %+v, want the googclient_ trace context", r)
	}
	r = wire.Parse(map[string]string{"traceparent": "00-cc-dd-01", "googclient_traceparent": "00-aa-bb-01"})
	if r.TraceParent != "00-cc-dd-01" {
		t.Fatalf("Parse = %+v, want traceparent to win over googclient_traceparent", r)
	}
}

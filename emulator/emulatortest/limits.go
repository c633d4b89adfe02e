package emulatortest

import (
	"fmt"
	"strings"
	"testing"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testLimits sends requests just past each of the service's limits, and
// requests right at them: the first are refused with InvalidArgument, the
// second accepted. Without Features.Limits the suite records what the
// emulator does instead (the message count limit is always checked).
func testLimits(t *testing.T, e *env) {
	topic := e.topic(t)
	msg := func(n int) *pubsubpb.PubsubMessage { return &pubsubpb.PubsubMessage{Data: make([]byte, n)} }
	attrs := func(n, keyLen, valLen int) map[string]string {
		m := map[string]string{}
		for i := range n {
			k := fmt.Sprintf("k%d", i)
			k += strings.Repeat("k", max(keyLen-len(k), 0))
			m[k] = strings.Repeat("v", valLen)
		}
		return m
	}
	many := func(n int) []*pubsubpb.PubsubMessage {
		out := make([]*pubsubpb.PubsubMessage, n)
		for i := range out {
			out[i] = msg(1)
		}
		return out
	}
	cases := []struct {
		name      string
		over, ok  []*pubsubpb.PubsubMessage
		always    bool // checked on every emulator
		overLimit string
	}{
		{"messages per request", many(1001), many(1000), true, "1,000 messages"},
		{"request size", []*pubsubpb.PubsubMessage{msg(10<<20 + 1)}, []*pubsubpb.PubsubMessage{msg(10<<20 - 1024)}, false, "10 MiB per publish request"},
		{"attributes per message", []*pubsubpb.PubsubMessage{{Data: []byte("x"), Attributes: attrs(101, 0, 1)}}, []*pubsubpb.PubsubMessage{{Data: []byte("x"), Attributes: attrs(100, 0, 1)}}, false, "100 attributes"},
		{"attribute key size", []*pubsubpb.PubsubMessage{{Data: []byte("x"), Attributes: attrs(1, 257, 1)}}, []*pubsubpb.PubsubMessage{{Data: []byte("x"), Attributes: attrs(1, 256, 1)}}, false, "256-byte attribute keys"},
		{"attribute value size", []*pubsubpb.PubsubMessage{{Data: []byte("x"), Attributes: attrs(1, 0, 1025)}}, []*pubsubpb.PubsubMessage{{Data: []byte("x"), Attributes: attrs(1, 0, 1024)}}, false, "1,024-byte attribute values"},
		{"ordering key size", []*pubsubpb.PubsubMessage{{Data: []byte("x"), OrderingKey: strings.Repeat("o", 1025)}}, []*pubsubpb.PubsubMessage{{Data: []byte("x"), OrderingKey: strings.Repeat("o", 1024)}}, false, "1,024-byte ordering keys"},
	}
	var departs []string
	for _, c := range cases {
		_, err := e.raw.Pub.Publish(e.ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: c.over})
		if c.always || e.f.Limits {
			wantCode(t, "Publish past the limit of "+c.overLimit, err, codes.InvalidArgument)
		} else if status.Code(err) != codes.InvalidArgument {
			departs = append(departs, fmt.Sprintf("%s (%v)", c.overLimit, status.Code(err)))
		}
		if _, err := e.raw.Pub.Publish(e.ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: c.ok}); err != nil {
			t.Errorf("Publish right at the limit of %s: %v", c.overLimit, err)
		}
	}
	// Ack IDs per Acknowledge request: 2,500.
	ackTopic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: ackTopic, AckDeadlineSeconds: 60})
	e.publish(t, ackTopic, data("ack me"))
	rm := e.pull(t, sub, 1)[0]
	ids := make([]string, 2501)
	for i := range ids {
		ids[i] = rm.AckId
	}
	_, err := e.raw.Sub.Acknowledge(e.ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids})
	if e.f.Limits {
		wantCode(t, "Acknowledge of 2,501 ack IDs", err, codes.InvalidArgument)
	} else if status.Code(err) != codes.InvalidArgument {
		departs = append(departs, fmt.Sprintf("2,500 ack IDs per request (%v)", status.Code(err)))
	}
	if _, err := e.raw.Sub.Acknowledge(e.ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids[:2500]}); err != nil {
		t.Errorf("Acknowledge of 2,500 ack IDs: %v", err)
	}
	if len(departs) > 0 {
		t.Logf("%s departs from the real service: it accepts requests past these limits: %s", e.f.Name, strings.Join(departs, "; "))
	}
}

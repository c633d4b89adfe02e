// Package wire is courier's message format on Pub/Sub, in one place: which
// topic a job type goes to (Naming), the attributes a job message carries
// (the CloudEvents Pub/Sub protocol binding in binary mode, plus courier's
// labels and W3C trace context), and how a received message's attributes
// are read back (Parse). (publisher.EncodedSize counts a message's size on
// these attributes, so that the API can refuse a job Pub/Sub would refuse.)
//
// It is for the packages that write and read job messages (publisher,
// ingest, the outbox relay, the JobService's size check). It does no I/O and
// knows nothing of the job store, gRPC or handlers. The message data is the
// payload's binary protobuf encoding; wire never decodes it.
package wire

import (
	"strings"
	"time"
)

// Attribute names. The ce- attributes and Content-Type follow the
// CloudEvents Pub/Sub protocol binding (binary content mode); the others are
// courier's own or W3C trace context.
const (
	AttrSpecVersion = "ce-specversion" // always SpecVersion
	AttrID          = "ce-id"          // the job ID
	AttrType        = "ce-type"        // full protobuf name of the payload
	AttrSource      = "ce-source"      // the publisher's Source
	AttrTime        = "ce-time"        // publish call time, RFC 3339

	// AttrContentType is the binding's name for the data's media type
	// (datacontenttype). AttrContentTypeLegacy is the lower-case name that
	// courier wrote before; both are written, and a reader takes either.
	AttrContentType       = "Content-Type"
	AttrContentTypeLegacy = "content-type"

	// AttrTraceparent and AttrTracestate carry the W3C trace context of the
	// job's enqueue (or publish). AttrGoogTraceparent and
	// AttrGoogTracestate are the names the official Pub/Sub clients use
	// when their OpenTelemetry tracing is on; courier writes them too, and
	// reads them when traceparent is absent, so traces join across both.
	AttrTraceparent     = "traceparent"
	AttrTracestate      = "tracestate"
	AttrGoogTraceparent = "googclient_traceparent"
	AttrGoogTracestate  = "googclient_tracestate"

	// AttrLabelPrefix prefixes one attribute per job label:
	// "courier-label-team" = "payments".
	AttrLabelPrefix = "courier-label-"

	SpecVersion = "1.0"
	ContentType = "application/protobuf"
)

// MaxMessageBytes is Pub/Sub's limit on one message, data and attributes
// together, as the client counts it (the encoded PubsubMessage).
const MaxMessageBytes = 10_000_000

// Message is one job message as courier writes it. Attributes renders it,
// Parse reads it back.
type Message struct {
	ID          string            // job ID; ce-id
	Type        string            // full protobuf name of the payload; ce-type
	Source      string            // ce-source; "" means "courier"
	Time        time.Time         // ce-time; zero leaves it out
	Labels      map[string]string // one AttrLabelPrefix attribute each
	TraceParent string            // W3C traceparent; "" when none
	TraceState  string            // W3C tracestate; "" when none
	OrderingKey string            // Pub/Sub ordering key; "" when none (not an attribute)
	Data        []byte            // binary protobuf encoding of the payload
}

// Attributes returns the Pub/Sub attributes of m.
func (m *Message) Attributes() map[string]string {
	attrs := make(map[string]string, 10+len(m.Labels))
	for k, v := range m.Labels {
		attrs[AttrLabelPrefix+k] = v
	}
	if m.TraceParent != "" {
		attrs[AttrTraceparent] = m.TraceParent
		attrs[AttrGoogTraceparent] = m.TraceParent
		if m.TraceState != "" {
			attrs[AttrTracestate] = m.TraceState
			attrs[AttrGoogTracestate] = m.TraceState
		}
	}
	source := m.Source
	if source == "" {
		source = "courier"
	}
	attrs[AttrSpecVersion] = SpecVersion
	attrs[AttrID] = m.ID
	attrs[AttrType] = m.Type
	attrs[AttrSource] = source
	attrs[AttrContentType] = ContentType
	attrs[AttrContentTypeLegacy] = ContentType
	if !m.Time.IsZero() {
		attrs[AttrTime] = m.Time.UTC().Format(time.RFC3339Nano)
	}
	return attrs
}

// Received is what courier reads of a received message's attributes.
type Received struct {
	ID          string // ce-id; "" when absent
	Type        string // ce-type; "" when absent
	Labels      map[string]string
	TraceParent string // traceparent, else googclient_traceparent; "" when neither
	TraceState  string
}

// Parse reads the courier attributes of a received message. It never fails:
// a missing attribute is "", and callers decide what that means.
func Parse(attrs map[string]string) Received {
	r := Received{ID: attrs[AttrID], Type: attrs[AttrType], Labels: Labels(attrs), TraceParent: attrs[AttrTraceparent], TraceState: attrs[AttrTracestate]}
	if r.TraceParent == "" {
		r.TraceParent, r.TraceState = attrs[AttrGoogTraceparent], attrs[AttrGoogTracestate]
	}
	return r
}

// Labels returns the job labels carried by attrs (AttrLabelPrefix
// attributes), never nil.
func Labels(attrs map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range attrs {
		if name, ok := strings.CutPrefix(k, AttrLabelPrefix); ok {
			out[name] = v
		}
	}
	return out
}

package publisher

import "strings"

// Attribute names of courier's wire format on Pub/Sub: the CloudEvents
// Pub/Sub protocol binding (binary mode) plus courier's own. The message data
// is the payload's binary protobuf encoding.
const (
	AttrSpecVersion = "ce-specversion" // always "1.0"
	AttrID          = "ce-id"          // the job ID
	AttrType        = "ce-type"        // full protobuf name of the payload
	AttrSource      = "ce-source"      // Config.Source
	AttrTime        = "ce-time"        // publish call time, RFC 3339
	AttrContentType = "content-type"   // always ContentType
	AttrTraceparent = "traceparent"    // W3C trace context, when ctx carries a span

	// AttrLabelPrefix prefixes one attribute per job label:
	// "courier-label-team" = "payments".
	AttrLabelPrefix = "courier-label-"

	SpecVersion = "1.0"
	ContentType = "application/protobuf"
)

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

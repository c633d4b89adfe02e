package courier

import (
	"strings"
	"testing"

	"github.com/courierq/courier/jobs"
)

// TestReenqueueKeyFitsTheLimit: the re-enqueue key of a job with the
// longest ID another publisher may use still fits the API's limit, and
// differs between jobs.
func TestReenqueueKeyFitsTheLimit(t *testing.T) {
	long := strings.Repeat("x", jobs.MaxIDBytes)
	if k := reenqueueKey(long); len(k) > jobs.MaxIdempotencyKeyBytes || k == reenqueueKey(long[1:]) {
		t.Fatalf("reenqueueKey of a %d-byte ID: %q (%d bytes)", len(long), k, len(k))
	}
	if k := reenqueueKey("01a2"); k != "courier-reenqueue:01a2" {
		t.Fatalf("reenqueueKey of a short ID: %q", k)
	}
}

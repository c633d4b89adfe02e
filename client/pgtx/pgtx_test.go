package pgtx_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/client"
	"github.com/courierq/courier/client/pgtx"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

// TestEnqueueRejectsBadInput: what pgtx can check is refused before the
// transaction is touched (so a nil one does), naming the field. The
// database side is tested in jobs/postgres (TestEnqueueTx) and on a fleet
// in the courier package (TestEnqueueTxRuns).
func TestEnqueueRejectsBadInput(t *testing.T) {
	echo := &demov1.Echo{Message: "x"}
	for _, c := range []struct {
		msg  *demov1.Echo
		opts client.EnqueueOptions
		want string
	}{
		{nil, client.EnqueueOptions{}, "msg is nil"},
		{echo, client.EnqueueOptions{MaxAttempts: -1}, "MaxAttempts is -1"},
		{echo, client.EnqueueOptions{Timeout: -time.Second}, "Timeout is -1s"},
		{echo, client.EnqueueOptions{UniqueFor: -time.Second}, "UniqueFor is -1s"},
		{&demov1.Echo{Message: strings.Repeat("x", 10_000_001)}, client.EnqueueOptions{}, "over"},
	} {
		var err error
		if c.msg == nil {
			_, _, err = pgtx.Enqueue(context.Background(), nil, "courier", nil, c.opts)
		} else {
			_, _, err = pgtx.Enqueue(context.Background(), nil, "courier", c.msg, c.opts)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Enqueue(%v): %v, want an error with %q", c.opts, err, c.want)
		}
	}
}

package jobservice

import (
	"testing"
	"time"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func TestEndedCache(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newEnded(2, time.Minute, func() time.Time { return now })
	running := &courierv1.Job{Id: "r", State: courierv1.State_RUNNING}
	c.put(running)
	if c.get("r") != nil {
		t.Fatal("a RUNNING job was cached: its state still changes")
	}
	a := &courierv1.Job{Id: "a", State: courierv1.State_SUCCEEDED}
	c.put(a)
	c.put(&courierv1.Job{Id: "b", State: courierv1.State_FAILED})
	if c.get("a") != a {
		t.Fatal("an ended job is not answered from the cache")
	}
	c.put(&courierv1.Job{Id: "c", State: courierv1.State_CANCELLED}) // over size: a goes
	if c.get("a") != nil || c.get("b") == nil || c.get("c") == nil {
		t.Fatalf("after a third entry in a cache of 2: a %v, b %v, c %v; want a evicted, b and c kept", c.get("a"), c.get("b"), c.get("c"))
	}
	now = now.Add(time.Minute + time.Second)
	if c.get("b") != nil {
		t.Fatal("an entry older than the ttl is still answered")
	}
	var off *ended = newEnded(-1, time.Minute, time.Now)
	off.put(a)
	if off != nil || off.get("a") != nil {
		t.Fatal("a cache of size -1 is on")
	}
}

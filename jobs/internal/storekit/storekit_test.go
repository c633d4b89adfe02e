package storekit

import (
	"errors"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
)

func TestTokenRoundTrip(t *testing.T) {
	for _, c := range []Cursor{
		{CreateTime: time.Date(2026, 11, 27, 12, 0, 0, 123456000, time.UTC), ID: "0190-abc"},
		{CreateTime: time.Unix(0, 0).UTC(), ID: "x"},
		{CreateTime: time.Date(1960, 1, 1, 0, 0, 0, 1000, time.UTC), ID: "ünïcode/with spaces"},
	} {
		got, ok, err := DecodeToken("p", EncodeToken(c))
		if err != nil || !ok || !got.CreateTime.Equal(c.CreateTime) || got.ID != c.ID {
			t.Fatalf("DecodeToken(EncodeToken(%+v)) = %+v, %v, %v", c, got, ok, err)
		}
	}
	if _, ok, err := DecodeToken("p", ""); ok || err != nil {
		t.Fatalf(`DecodeToken("") = %v, %v; want first page`, ok, err)
	}
	for _, bad := range []string{"%%%", "AA", "AgAA", EncodeToken(Cursor{ID: "x"})[:2]} {
		_, _, err := DecodeToken("p", bad)
		if !errors.Is(err, jobs.ErrInvalidArgument) {
			t.Fatalf("DecodeToken(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestRound(t *testing.T) {
	in := time.Date(2026, 1, 1, 1, 0, 0, 999999999, time.FixedZone("X", 3600))
	got := Round(in)
	if want := time.Date(2026, 1, 1, 0, 0, 0, 999999000, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("Round(%v) = %v, want %v", in, got, want)
	}
	if !Round(time.Time{}).IsZero() {
		t.Fatal("Round(zero) is not zero")
	}
}

func TestHub(t *testing.T) {
	var h Hub
	a, cancelA := h.Subscribe("j")
	b, cancelB := h.Subscribe("j")
	other, cancelOther := h.Subscribe("k")
	defer cancelOther()
	h.Notify("j")
	h.Notify("j") // coalesced: must not block
	for name, ch := range map[string]<-chan struct{}{"a": a, "b": b} {
		select {
		case <-ch:
		default:
			t.Fatalf("subscriber %s not woken", name)
		}
		select {
		case <-ch:
			t.Fatalf("subscriber %s got two values; want them coalesced", name)
		default:
		}
	}
	select {
	case <-other:
		t.Fatal("subscriber of another job woken")
	default:
	}
	cancelA()
	cancelA()
	h.Notify("j")
	select {
	case <-a:
		t.Fatal("cancelled subscriber woken")
	default:
	}
	h.NotifyAll()
	select {
	case <-other:
	default:
		t.Fatal("NotifyAll did not wake every subscriber")
	}
	h.Close()
	h.Close()
	if _, ok := <-b; ok {
		// b had a pending value from Notify; the next read sees the close.
		if _, ok := <-b; ok {
			t.Fatal("channel not closed by Close")
		}
	}
	cancelB() // after Close: harmless
	c, _ := h.Subscribe("j")
	if _, ok := <-c; ok {
		t.Fatal("Subscribe after Close: channel not closed")
	}
}

func TestNewJob(t *testing.T) {
	j, err := NewJob("p", "Enqueue", jobs.Job{Type: "t", Payload: []byte{}, Labels: map[string]string{}, State: jobs.Failed, Attempt: 3}, false)
	if err != nil {
		t.Fatal(err)
	}
	if j.ID == "" || j.State != jobs.Queued || j.Attempt != 0 || j.Payload != nil || j.Labels != nil {
		t.Fatalf("NewJob = %+v", j)
	}
	if _, err := NewJob("p", "Ensure", jobs.Job{Type: "t"}, true); !errors.Is(err, jobs.ErrInvalidArgument) {
		t.Fatalf("NewJob without ID for Ensure = %v", err)
	}
}

package storekit

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

func TestTally(t *testing.T) {
	now := time.Date(2026, 1, 1, 10, 30, 45, 0, time.UTC)
	var a, b Tally
	if !a.Empty() {
		t.Fatal("zero Tally not empty")
	}
	a.Move("T", "", jobs.Queued, now)
	a.Move("T", jobs.Queued, jobs.Running, now)
	a.Move("T", jobs.Running, jobs.Running, now) // a takeover: nothing
	b.Move("T", jobs.Running, jobs.Succeeded, now)
	b.Move("A", jobs.Running, jobs.Failed, now.Add(time.Minute))
	b.Move("A", jobs.Failed, "", now) // deleted
	a.Add(&b)
	keys, deltas := a.Counts()
	want := []CountKey{{"A", jobs.Running}, {"T", jobs.Succeeded}}
	if !slices.Equal(keys, want) || !slices.Equal(deltas, []int{-1, 1}) {
		t.Fatalf("Counts = %v %v; want %v [-1 1] (zero deltas dropped, sorted)", keys, deltas, want)
	}
	ends, ns := a.Ends()
	if len(ends) != 2 || ends[0] != (EndKey{Minute(now), "T"}) || ns[0] != (Ends{Succeeded: 1}) ||
		ends[1] != (EndKey{Minute(now.Add(time.Minute)), "A"}) || ns[1] != (Ends{Failed: 1}) {
		t.Fatalf("Ends = %v %v", ends, ns)
	}
	a.Reset()
	if !a.Empty() {
		t.Fatal("Tally not empty after Reset")
	}
}

func TestBucketAndClip(t *testing.T) {
	at := time.Date(2026, 1, 1, 10, 37, 12, 5, time.UTC)
	if got, want := Bucket(at, 5*time.Minute), time.Date(2026, 1, 1, 10, 35, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("Bucket(5m) = %v, want %v", got, want)
	}
	if got, want := Bucket(time.Unix(-90, 0), time.Minute), time.Unix(-120, 0).UTC(); !got.Equal(want) {
		t.Fatalf("Bucket before the epoch = %v, want %v", got, want)
	}
	long := strings.Repeat("é", 100) // 200 bytes
	c := Clip(long)
	if len(c) > 100 || !utf8.ValidString(c) || !strings.Contains(c, "(200 bytes)") {
		t.Fatalf("Clip = %q: want at most ~64 bytes of valid UTF-8 and the length", c)
	}
	if Clip("short") != "short" {
		t.Fatal("Clip changed a short string")
	}
}

package emulatortest

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func testFilters(t *testing.T, e *env) {
	msgs := []struct {
		data  string
		attrs map[string]string
	}{
		{"red-L", map[string]string{"color": "red", "size": "L"}},
		{"red", map[string]string{"color": "red"}},
		{"blue-S", map[string]string{"color": "blue", "size": "S"}},
		{"black", map[string]string{"color": "black"}},
		{"M", map[string]string{"size": "M"}},
		{"none", nil},
	}
	cases := []struct {
		filter string
		want   []string
	}{
		{`attributes.color = "red"`, []string{"red", "red-L"}},
		{`attributes.color != "red"`, []string{"M", "black", "blue-S", "none"}},
		{`attributes:size`, []string{"M", "blue-S", "red-L"}},
		{`hasPrefix(attributes.color, "bl")`, []string{"black", "blue-S"}},
		{`NOT attributes:size`, []string{"black", "none", "red"}},
		{`attributes.color = "red" AND attributes:size`, []string{"red-L"}},
		{`attributes.color = "red" OR attributes.color = "blue"`, []string{"blue-S", "red", "red-L"}},
		{`(attributes.color = "red" OR attributes.color = "blue") AND NOT attributes.size = "L"`, []string{"blue-S", "red"}},
	}
	topic := e.topic(t)
	subs := make([]string, len(cases))
	for i, c := range cases {
		subs[i] = e.sub(t, &pubsubpb.Subscription{Topic: topic, Filter: c.filter, AckDeadlineSeconds: 60})
	}
	var pms []*pubsubpb.PubsubMessage
	for _, m := range msgs {
		pms = append(pms, &pubsubpb.PubsubMessage{Data: []byte(m.data), Attributes: m.attrs})
	}
	e.publish(t, topic, pms...)
	if !e.f.Filters {
		// Check what the emulator really does: every message is delivered.
		got := e.pull(t, subs[0], len(msgs))
		if len(got) != len(msgs) {
			t.Fatalf("got %d messages", len(got))
		}
		t.Skipf("%s departs from the real service: it ignores subscription filters (filter %q delivered all %d messages)", e.f.Name, cases[0].filter, len(got))
	}
	for i, c := range cases {
		got := e.pull(t, subs[i], len(c.want))
		if g := sorted(datas(got)); !slices.Equal(g, c.want) {
			t.Errorf("filter %s delivered %v, want %v", c.filter, g, c.want)
		}
		e.ack(t, subs[i], got...)
	}
	// Nothing beyond the matches.
	for i, c := range cases {
		ctxSub := subs[i]
		res, err := PullNow(e.ctx, e.raw.Sub, ctxSub, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.ReceivedMessages) > 0 {
			t.Errorf("filter %s also delivered %v", c.filter, datas(res.ReceivedMessages))
		}
	}
}

func testInvalidFilter(t *testing.T, e *env) {
	e.skipUnless(t, e.f.FilterValidation, "it accepts invalid filters")
	topic := e.topic(t)
	for _, f := range []string{
		`attributes.color =`,
		`color = "red"`,
		`attributes.a = "x" AND attributes.b = "y" OR attributes.c = "z"`,
		`hasPrefix(attributes.a)`,
		`(attributes:a`,
	} {
		_, err := e.raw.Sub.CreateSubscription(e.ctx, &pubsubpb.Subscription{Name: Name("subscriptions", "bad"), Topic: topic, Filter: f})
		wantCode(t, "filter "+f, err, codes.InvalidArgument)
	}
}

func testSeekTime(t *testing.T, e *env) {
	e.skipUnless(t, e.f.SnapshotsSeek, "Seek is not supported")
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60, RetainAckedMessages: true})
	ids := e.publish(t, topic, data("a"), data("b"), data("c"))
	got := e.pull(t, sub, 3)
	e.ack(t, sub, got...)
	oldest := got[0].Message.PublishTime.AsTime()
	for _, rm := range got {
		if p := rm.Message.PublishTime.AsTime(); p.Before(oldest) {
			oldest = p
		}
	}
	// Seek back: the acked (and retained) messages come back.
	if _, err := e.raw.Sub.Seek(e.ctx, &pubsubpb.SeekRequest{Subscription: sub, Target: &pubsubpb.SeekRequest_Time{Time: timestamppb.New(oldest)}}); err != nil {
		t.Fatal(err)
	}
	again := e.pull(t, sub, 3)
	var gotIDs []string
	for _, rm := range again {
		gotIDs = append(gotIDs, rm.Message.MessageId)
	}
	if !slices.Equal(sorted(gotIDs), sorted(ids)) {
		t.Fatalf("after seeking back got %v, want %v", gotIDs, ids)
	}
	// Seek forward: everything published before now counts as acked.
	if _, err := e.raw.Sub.Seek(e.ctx, &pubsubpb.SeekRequest{Subscription: sub, Target: &pubsubpb.SeekRequest_Time{Time: timestamppb.New(time.Now().Add(time.Second))}}); err != nil {
		t.Fatal(err)
	}
	res, err := PullNow(e.ctx, e.raw.Sub, sub, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ReceivedMessages) > 0 {
		t.Fatalf("after seeking forward got %v, want nothing", datas(res.ReceivedMessages))
	}
}

func testSnapshotSeek(t *testing.T, e *env) {
	e.skipUnless(t, e.f.SnapshotsSeek, "snapshots are not supported")
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60})
	e.publish(t, topic, data("before-1"), data("before-2"))
	snapName := Name("snapshots", "snap")
	snap, err := e.raw.Sub.CreateSnapshot(e.ctx, &pubsubpb.CreateSnapshotRequest{Name: snapName, Subscription: sub})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Topic != topic || snap.ExpireTime == nil {
		t.Errorf("snapshot %v: want topic %s and an expire time", snap, topic)
	}
	_, err = e.raw.Sub.CreateSnapshot(e.ctx, &pubsubpb.CreateSnapshotRequest{Name: snapName, Subscription: sub})
	wantCode(t, "CreateSnapshot twice", err, codes.AlreadyExists)
	got := e.pull(t, sub, 2)
	e.ack(t, sub, got...)
	e.publish(t, topic, data("after"))
	e.ack(t, sub, e.pull(t, sub, 1)...)

	if _, err := e.raw.Sub.Seek(e.ctx, &pubsubpb.SeekRequest{Subscription: sub, Target: &pubsubpb.SeekRequest_Snapshot{Snapshot: snapName}}); err != nil {
		t.Fatal(err)
	}
	// The snapshot holds what was unacked when it was made, and what was
	// published since.
	back := e.pull(t, sub, 3)
	if g := sorted(datas(back)); !slices.Equal(g, []string{"after", "before-1", "before-2"}) {
		t.Fatalf("after seeking to the snapshot got %v", g)
	}
	list, err := e.raw.Pub.ListTopicSnapshots(e.ctx, &pubsubpb.ListTopicSnapshotsRequest{Topic: topic})
	if err != nil || !slices.Contains(list.Snapshots, snapName) {
		t.Fatalf("ListTopicSnapshots: %v, %v", list, err)
	}
	if _, err := e.raw.Sub.DeleteSnapshot(e.ctx, &pubsubpb.DeleteSnapshotRequest{Snapshot: snapName}); err != nil {
		t.Fatal(err)
	}
	_, err = e.raw.Sub.Seek(e.ctx, &pubsubpb.SeekRequest{Subscription: sub, Target: &pubsubpb.SeekRequest_Snapshot{Snapshot: snapName}})
	wantCode(t, "Seek to a deleted snapshot", err, codes.NotFound)
}

func testTopicRetention(t *testing.T, e *env) {
	e.skipUnless(t, e.f.TopicRetention, "Seek to a time does not bring back messages kept by the topic's message_retention_duration")
	topic := Name("topics", "retained")
	if _, err := e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: topic, MessageRetentionDuration: dur(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	id := e.publish(t, topic, data("early"))[0]
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60})
	if _, err := e.raw.Sub.Seek(e.ctx, &pubsubpb.SeekRequest{Subscription: sub, Target: &pubsubpb.SeekRequest_Time{Time: timestamppb.New(before)}}); err != nil {
		t.Fatal(err)
	}
	got := e.pull(t, sub, 1)
	if got[0].Message.MessageId != id {
		t.Fatalf("after seeking before the subscription existed got %s (%q), want %s", got[0].Message.MessageId, got[0].Message.Data, id)
	}
}

func testDetach(t *testing.T, e *env) {
	e.skipUnless(t, e.f.Detach, "DetachSubscription answers Unimplemented")
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic})
	e.publish(t, topic, data("x"))
	if _, err := e.raw.Pub.DetachSubscription(e.ctx, &pubsubpb.DetachSubscriptionRequest{Subscription: sub}); err != nil {
		t.Fatal(err)
	}
	got, err := e.raw.Sub.GetSubscription(e.ctx, &pubsubpb.GetSubscriptionRequest{Subscription: sub})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Detached {
		t.Error("subscription not marked detached")
	}
	_, err = e.raw.Sub.Pull(e.ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 1})
	wantCode(t, "Pull on a detached subscription", err, codes.FailedPrecondition)
}

type pushed struct {
	header http.Header
	body   []byte
}

// pushEndpoint serves HTTP: the first fail requests get a 500, the rest a
// 204. Every request is sent on the returned channel.
func pushEndpoint(t *testing.T, fail int32) (string, <-chan pushed) {
	ch := make(chan pushed, 100)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ch <- pushed{r.Header.Clone(), body}
		if n.Add(1) <= fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/push", ch
}

func (e *env) nextPush(t *testing.T, ch <-chan pushed) pushed {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-e.ctx.Done():
		t.Fatal("no push request arrived")
	}
	return pushed{}
}

func testPush(t *testing.T, e *env) {
	e.skipUnless(t, e.f.Push, "push delivery is not faithful")
	url, ch := pushEndpoint(t, 1)
	topic := e.topic(t)
	// Made as a pull subscription, turned into a push one.
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic})
	if _, err := e.raw.Sub.ModifyPushConfig(e.ctx, &pubsubpb.ModifyPushConfigRequest{Subscription: sub, PushConfig: &pubsubpb.PushConfig{PushEndpoint: url}}); err != nil {
		t.Fatal(err)
	}
	id := e.publish(t, topic, &pubsubpb.PubsubMessage{Data: []byte("pushed"), Attributes: map[string]string{"k": "v"}})[0]
	var first, second struct {
		Message struct {
			Data       string            `json:"data"`
			Attributes map[string]string `json:"attributes"`
			MessageID  string            `json:"messageId"`
			MessageID2 string            `json:"message_id"`
			Publish    string            `json:"publishTime"`
		} `json:"message"`
		Subscription string `json:"subscription"`
	}
	p := e.nextPush(t, ch) // answered 500: retried
	if err := json.Unmarshal(p.body, &first); err != nil {
		t.Fatalf("push body %q is not JSON: %v", p.body, err)
	}
	raw, _ := base64.StdEncoding.DecodeString(first.Message.Data)
	if string(raw) != "pushed" || first.Message.Attributes["k"] != "v" || first.Message.MessageID != id || first.Message.MessageID2 != id || first.Message.Publish == "" || first.Subscription != sub {
		t.Fatalf("push body %s: want data \"pushed\", attribute k=v, message ID %s, a publish time and subscription %s", p.body, id, sub)
	}
	p = e.nextPush(t, ch) // the retry, answered 204: acked
	if err := json.Unmarshal(p.body, &second); err != nil {
		t.Fatal(err)
	}
	if second.Message.MessageID != id {
		t.Fatalf("retry pushed message %s, want %s", second.Message.MessageID, id)
	}
	// Acked: a new message is the next push, not a third copy.
	next := e.publish(t, topic, data("next"))[0]
	p = e.nextPush(t, ch)
	if err := json.Unmarshal(p.body, &second); err != nil {
		t.Fatal(err)
	}
	if second.Message.MessageID != next {
		t.Fatalf("after the 2xx got message %s pushed again, want %s", second.Message.MessageID, next)
	}
}

func testPushNoWrapper(t *testing.T, e *env) {
	e.skipUnless(t, e.f.Push, "push delivery is not faithful")
	url, ch := pushEndpoint(t, 0)
	topic := e.topic(t)
	e.sub(t, &pubsubpb.Subscription{Topic: topic, PushConfig: &pubsubpb.PushConfig{
		PushEndpoint: url,
		Wrapper:      &pubsubpb.PushConfig_NoWrapper_{NoWrapper: &pubsubpb.PushConfig_NoWrapper{WriteMetadata: true}},
	}})
	id := e.publish(t, topic, &pubsubpb.PubsubMessage{Data: []byte("raw body"), Attributes: map[string]string{"color": "red"}})[0]
	p := e.nextPush(t, ch)
	if string(p.body) != "raw body" {
		t.Fatalf("no_wrapper push body %q, want the raw data", p.body)
	}
	if p.header.Get("color") != "red" || p.header.Get("x-goog-pubsub-message-id") != id {
		t.Fatalf("no_wrapper write_metadata headers %v: want color=red and x-goog-pubsub-message-id=%s", p.header, id)
	}
}

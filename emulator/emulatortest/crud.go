package emulatortest

import (
	"slices"
	"testing"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

func testTopicCRUD(t *testing.T, e *env) {
	name := Name("topics", "crud")
	created, err := e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: name, Labels: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if created.Name != name || created.Labels["a"] != "1" {
		t.Fatalf("CreateTopic returned %v", created)
	}
	_, err = e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: name})
	wantCode(t, "CreateTopic twice", err, codes.AlreadyExists)

	got, err := e.raw.Pub.GetTopic(e.ctx, &pubsubpb.GetTopicRequest{Topic: name})
	if err != nil || got.Name != name {
		t.Fatalf("GetTopic: %v, %v", got, err)
	}
	list, err := e.raw.Pub.ListTopics(e.ctx, &pubsubpb.ListTopicsRequest{Project: "projects/" + Project, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list.Topics, func(x *pubsubpb.Topic) bool { return x.Name == name }) {
		t.Fatalf("ListTopics does not list %s", name)
	}

	upd, err := e.raw.Pub.UpdateTopic(e.ctx, &pubsubpb.UpdateTopicRequest{
		Topic:      &pubsubpb.Topic{Name: name, Labels: map[string]string{"b": "2"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}},
	})
	if e.f.UpdateLabels {
		if err != nil {
			t.Fatalf("UpdateTopic labels: %v", err)
		}
		if upd.Labels["b"] != "2" || upd.Labels["a"] != "" {
			t.Fatalf("UpdateTopic labels gave %v, want exactly b=2", upd.Labels)
		}
	} else {
		wantCode(t, "UpdateTopic labels (departing from the real service, which accepts it)", err, codes.InvalidArgument)
		t.Logf("%s departs from the real service: UpdateTopic rejects update_mask \"labels\": %v", e.f.Name, err)
	}
	if e.f.Validation {
		_, err = e.raw.Pub.UpdateTopic(e.ctx, &pubsubpb.UpdateTopicRequest{Topic: &pubsubpb.Topic{Name: name}})
		wantCode(t, "UpdateTopic without update_mask", err, codes.InvalidArgument)
	}

	if _, err := e.raw.Pub.DeleteTopic(e.ctx, &pubsubpb.DeleteTopicRequest{Topic: name}); err != nil {
		t.Fatal(err)
	}
	_, err = e.raw.Pub.GetTopic(e.ctx, &pubsubpb.GetTopicRequest{Topic: name})
	wantCode(t, "GetTopic after delete", err, codes.NotFound)
	_, err = e.raw.Pub.DeleteTopic(e.ctx, &pubsubpb.DeleteTopicRequest{Topic: name})
	wantCode(t, "DeleteTopic twice", err, codes.NotFound)
	_, err = e.raw.Pub.Publish(e.ctx, &pubsubpb.PublishRequest{Topic: name, Messages: []*pubsubpb.PubsubMessage{data("x")}})
	wantCode(t, "Publish to a deleted topic", err, codes.NotFound)
}

func testSubscriptionCRUD(t *testing.T, e *env) {
	topic := e.topic(t)
	name := Name("subscriptions", "crud")
	created, err := e.raw.Sub.CreateSubscription(e.ctx, &pubsubpb.Subscription{Name: name, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	if created.AckDeadlineSeconds != 10 {
		t.Errorf("default ack_deadline_seconds = %d, want 10", created.AckDeadlineSeconds)
	}
	if created.Topic != topic {
		t.Errorf("topic = %q, want %q", created.Topic, topic)
	}
	_, err = e.raw.Sub.CreateSubscription(e.ctx, &pubsubpb.Subscription{Name: name, Topic: topic})
	wantCode(t, "CreateSubscription twice", err, codes.AlreadyExists)
	_, err = e.raw.Sub.CreateSubscription(e.ctx, &pubsubpb.Subscription{Name: Name("subscriptions", "orphan"), Topic: Name("topics", "missing")})
	wantCode(t, "CreateSubscription on a missing topic", err, codes.NotFound)

	paths := []string{"ack_deadline_seconds", "labels"}
	if !e.f.UpdateLabels {
		t.Logf("%s departs from the real service: UpdateSubscription rejects update_mask \"labels\"; updating only ack_deadline_seconds", e.f.Name)
		paths = paths[:1]
	}
	upd, err := e.raw.Sub.UpdateSubscription(e.ctx, &pubsubpb.UpdateSubscriptionRequest{
		Subscription: &pubsubpb.Subscription{Name: name, AckDeadlineSeconds: 30, Labels: map[string]string{"x": "y"}},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: paths},
	})
	if err != nil {
		t.Fatalf("UpdateSubscription %v: %v", paths, err)
	}
	if upd.AckDeadlineSeconds != 30 || (e.f.UpdateLabels && upd.Labels["x"] != "y") {
		t.Fatalf("UpdateSubscription gave deadline %d labels %v", upd.AckDeadlineSeconds, upd.Labels)
	}
	got, err := e.raw.Sub.GetSubscription(e.ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
	if err != nil || got.AckDeadlineSeconds != 30 {
		t.Fatalf("GetSubscription after update: %v, %v", got, err)
	}
	if e.f.Validation {
		_, err = e.raw.Sub.UpdateSubscription(e.ctx, &pubsubpb.UpdateSubscriptionRequest{
			Subscription: &pubsubpb.Subscription{Name: name, AckDeadlineSeconds: 5000},
			UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"ack_deadline_seconds"}},
		})
		wantCode(t, "UpdateSubscription with ack deadline 5000s", err, codes.InvalidArgument)
	}

	subs, err := e.raw.Pub.ListTopicSubscriptions(e.ctx, &pubsubpb.ListTopicSubscriptionsRequest{Topic: topic})
	if err != nil || !slices.Contains(subs.Subscriptions, name) {
		t.Fatalf("ListTopicSubscriptions: %v, %v", subs, err)
	}
	list, err := e.raw.Sub.ListSubscriptions(e.ctx, &pubsubpb.ListSubscriptionsRequest{Project: "projects/" + Project, PageSize: 1000})
	if err != nil || !slices.ContainsFunc(list.Subscriptions, func(s *pubsubpb.Subscription) bool { return s.Name == name }) {
		t.Fatalf("ListSubscriptions does not list %s: %v", name, err)
	}

	// Deleting the topic leaves the subscription, pointing at _deleted-topic_.
	if _, err := e.raw.Pub.DeleteTopic(e.ctx, &pubsubpb.DeleteTopicRequest{Topic: topic}); err != nil {
		t.Fatal(err)
	}
	got, err = e.raw.Sub.GetSubscription(e.ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
	if err != nil {
		t.Fatalf("GetSubscription after its topic was deleted: %v", err)
	}
	if got.Topic != "_deleted-topic_" {
		t.Errorf("topic after delete = %q, want _deleted-topic_", got.Topic)
	}

	if _, err := e.raw.Sub.DeleteSubscription(e.ctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: name}); err != nil {
		t.Fatal(err)
	}
	_, err = e.raw.Sub.GetSubscription(e.ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
	wantCode(t, "GetSubscription after delete", err, codes.NotFound)
	_, err = e.raw.Sub.Pull(e.ctx, &pubsubpb.PullRequest{Subscription: name, MaxMessages: 1})
	wantCode(t, "Pull after delete", err, codes.NotFound)
}

func testResourceNames(t *testing.T, e *env) {
	e.skipUnless(t, e.f.Validation, "it accepts resource names the real service rejects")
	for _, bad := range []string{
		"topics/t1",                        // no project
		"projects/" + Project + "/topics/", // empty ID
		"projects/" + Project + "/topics/ab",
		"projects/" + Project + "/topics/1abc",
		"projects/" + Project + "/topics/googtopic",
		"projects/" + Project + "/topics/has space",
		"projects/" + Project + "/subscriptions/wrongkind",
	} {
		_, err := e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: bad})
		wantCode(t, "CreateTopic("+bad+")", err, codes.InvalidArgument)
	}
	topic := e.topic(t)
	_, err := e.raw.Sub.CreateSubscription(e.ctx, &pubsubpb.Subscription{Name: "projects/" + Project + "/subscriptions/x", Topic: topic})
	wantCode(t, "CreateSubscription with a 1-character ID", err, codes.InvalidArgument)
	_, err = e.raw.Pub.Publish(e.ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{}}})
	wantCode(t, "Publish of an empty message", err, codes.InvalidArgument)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic})
	_, err = e.raw.Sub.Acknowledge(e.ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: []string{"not an ack id"}})
	wantCode(t, "Acknowledge of a malformed ack ID", err, codes.InvalidArgument)
	_, err = e.raw.Sub.Pull(e.ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 0})
	wantCode(t, "Pull with max_messages 0", err, codes.InvalidArgument)
	_, err = e.raw.Sub.CreateSubscription(e.ctx, &pubsubpb.Subscription{
		Name: Name("subscriptions", "dl"), Topic: topic,
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic, MaxDeliveryAttempts: 2},
	})
	wantCode(t, "max_delivery_attempts 2 (the minimum is 5)", err, codes.OutOfRange)
}

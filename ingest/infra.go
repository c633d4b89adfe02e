package ingest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// prepare creates what is missing and brings existing subscriptions in line
// with the handlers' Config, or with DisableCreate checks that the
// subscriptions exist.
func (w *Worker) prepare() error {
	if w.cfg.DisableCreate {
		return w.checkSubscriptions(w.pullCtx)
	}
	for _, t := range w.types {
		if err := w.ensure(w.pullCtx, t); err != nil {
			return err
		}
	}
	return nil
}

// wantSubscriptions returns the subscriptions t needs: the dead-letter
// subscription (which keeps dead letters) and the worker subscription with
// its retry and dead-letter policies.
func (w *Worker) wantSubscriptions(t *typeRun) (topic, dlTopic string, subs []*pubsubpb.Subscription) {
	project := "projects/" + w.cfg.Client.Project()
	topic = project + "/topics/" + t.names.Topic
	dlTopic = project + "/topics/" + t.names.DeadLetterTopic
	c := t.entry.Config
	ackSecs := int32(w.cfg.AckDeadline / time.Second)
	worker := &pubsubpb.Subscription{
		Name: project + "/subscriptions/" + t.names.Subscription, Topic: topic, AckDeadlineSeconds: ackSecs,
		RetryPolicy: &pubsubpb.RetryPolicy{
			MinimumBackoff: durationpb.New(c.MinBackoff),
			MaximumBackoff: durationpb.New(c.MaxBackoff),
		},
		// A safety net: the worker itself dead-letters after MaxAttempts;
		// Pub/Sub requires 5..100 here.
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dlTopic, MaxDeliveryAttempts: int32(min(max(5, c.MaxAttempts), 100))},
		// Jobs enqueued with an ordering key are delivered in order, one
		// at a time per key; messages without a key are unaffected.
		EnableMessageOrdering: true,
	}
	if w.cfg.Push != nil { // push.go says why the net is wider
		worker.PushConfig = w.cfg.Push.subscription()
		worker.DeadLetterPolicy.MaxDeliveryAttempts = maxPushDeliveryAttempts
	}
	return topic, dlTopic, []*pubsubpb.Subscription{
		{Name: project + "/subscriptions/" + t.names.DeadLetterSubscription, Topic: dlTopic, AckDeadlineSeconds: ackSecs},
		worker,
	}
}

// ensure creates the topic, dead-letter topic, dead-letter subscription and
// worker subscription of t, each only if missing; a worker subscription that
// exists with other retry or dead-letter policies, another ack deadline, or
// another delivery (pull, or push elsewhere), is updated to the Config's
// (config drift), each change logged.
func (w *Worker) ensure(ctx context.Context, t *typeRun) error {
	topic, dlTopic, subs := w.wantSubscriptions(t)
	for _, name := range []string{topic, dlTopic} {
		if _, err := w.cfg.Client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name}); err != nil && !alreadyExists(err) {
			return fmt.Errorf("ingest: creating topic %s: %w", name, err)
		}
	}
	for _, s := range subs {
		_, err := w.cfg.Client.SubscriptionAdminClient.CreateSubscription(ctx, s)
		switch {
		case err == nil:
		case alreadyExists(err):
			if err := w.align(ctx, s); err != nil {
				return err
			}
		default:
			return fmt.Errorf("ingest: creating subscription %s: %w", s.Name, err)
		}
	}
	return nil
}

// align updates the existing subscription want.Name where its ack deadline,
// retry policy, dead-letter policy or push config (pull when want has none)
// differ from want's.
func (w *Worker) align(ctx context.Context, want *pubsubpb.Subscription) error {
	have, err := w.cfg.Client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: want.Name})
	if err != nil {
		return fmt.Errorf("ingest: reading subscription %s: %w", want.Name, err)
	}
	if want.GetEnableMessageOrdering() && !have.GetEnableMessageOrdering() {
		// Pub/Sub cannot change it on an existing subscription.
		w.log.Warn("ingest: subscription was created without message ordering, so jobs with an ordering key are not delivered in order; delete it (its messages with it) and let the worker create it again to order them",
			"subscription", want.Name)
	}
	var paths, changes []string
	if have.GetAckDeadlineSeconds() != want.GetAckDeadlineSeconds() {
		paths = append(paths, "ack_deadline_seconds")
		changes = append(changes, fmt.Sprintf("ack deadline %ds → %ds", have.GetAckDeadlineSeconds(), want.GetAckDeadlineSeconds()))
	}
	if want.RetryPolicy != nil && !proto.Equal(have.GetRetryPolicy(), want.GetRetryPolicy()) {
		paths = append(paths, "retry_policy")
		changes = append(changes, fmt.Sprintf("retry backoff %s..%s → %s..%s",
			durString(have.GetRetryPolicy().GetMinimumBackoff()), durString(have.GetRetryPolicy().GetMaximumBackoff()),
			durString(want.GetRetryPolicy().GetMinimumBackoff()), durString(want.GetRetryPolicy().GetMaximumBackoff())))
	}
	if want.DeadLetterPolicy != nil && !proto.Equal(have.GetDeadLetterPolicy(), want.GetDeadLetterPolicy()) {
		paths = append(paths, "dead_letter_policy")
		changes = append(changes, fmt.Sprintf("dead letters after %d deliveries to %q → after %d to %q",
			have.GetDeadLetterPolicy().GetMaxDeliveryAttempts(), have.GetDeadLetterPolicy().GetDeadLetterTopic(),
			want.GetDeadLetterPolicy().GetMaxDeliveryAttempts(), want.GetDeadLetterPolicy().GetDeadLetterTopic()))
	}
	if !samePush(have.GetPushConfig(), want.GetPushConfig()) {
		paths = append(paths, "push_config")
		changes = append(changes, fmt.Sprintf("delivery %s → %s", describePush(have.GetPushConfig()), describePush(want.GetPushConfig())))
	}
	if len(paths) == 0 {
		return nil
	}
	upd := proto.Clone(want).(*pubsubpb.Subscription)
	if upd.PushConfig == nil {
		upd.PushConfig = &pubsubpb.PushConfig{} // pull
	}
	if _, err := w.cfg.Client.SubscriptionAdminClient.UpdateSubscription(ctx, &pubsubpb.UpdateSubscriptionRequest{
		Subscription: upd, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
	}); err != nil {
		return fmt.Errorf("ingest: updating subscription %s (%s) to match the handler config: %w", want.Name, strings.Join(changes, "; "), err)
	}
	for _, c := range changes {
		w.log.Info("ingest: subscription updated to match the handler config", "subscription", want.Name, "change", c)
	}
	return nil
}

func durString(d *durationpb.Duration) string {
	if d == nil {
		return "default"
	}
	return d.AsDuration().String()
}

// checkSubscriptions returns an error naming every worker subscription that
// does not exist.
func (w *Worker) checkSubscriptions(ctx context.Context) error {
	var missing []string
	for _, e := range w.cfg.Registry.Entries() {
		n := w.types[e.Type].names
		name := "projects/" + w.cfg.Client.Project() + "/subscriptions/" + n.Subscription
		sub, err := w.cfg.Client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
		switch {
		case notFound(err):
			missing = append(missing, fmt.Sprintf("%s (on topic %s, for %s)", n.Subscription, n.Topic, e.Type))
		case err != nil:
			return fmt.Errorf("ingest: checking subscription %s: %w", name, err)
		case !sub.GetEnableMessageOrdering():
			w.log.Warn("ingest: subscription has no message ordering, so jobs with an ordering key are not delivered in order; create it with message ordering enabled to order them",
				"subscription", name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("ingest: Config.DisableCreate is set but these subscriptions do not exist in project %s: %s; create them, or leave DisableCreate off so the worker does",
			w.cfg.Client.Project(), strings.Join(missing, ", "))
	}
	return nil
}

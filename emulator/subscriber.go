package emulator

import (
	"container/heap"
	"context"
	"net/url"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
)

type subscriberService struct {
	pubsubpb.UnimplementedSubscriberServer
	e *engine
}

func protoName(path string) protoreflect.Name { return protoreflect.Name(path) }

// checkSub validates a subscription's settings and fills in the defaults
// the real service reports.
func checkSub(pb *pubsubpb.Subscription) (filter, error) {
	if pb.AckDeadlineSeconds == 0 {
		pb.AckDeadlineSeconds = 10
	}
	if pb.AckDeadlineSeconds < 10 || pb.AckDeadlineSeconds > 600 {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid ack_deadline_seconds %d: it must be between 10 and 600.", pb.AckDeadlineSeconds)
	}
	if pb.MessageRetentionDuration == nil {
		pb.MessageRetentionDuration = durationpb.New(7 * 24 * time.Hour)
	}
	if d := pb.MessageRetentionDuration.AsDuration(); d < 10*time.Minute || d > 7*24*time.Hour {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid message_retention_duration %v: it must be between 10 minutes and 7 days.", d)
	}
	if pb.ExpirationPolicy == nil {
		pb.ExpirationPolicy = &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(31 * 24 * time.Hour)}
	}
	if ttl := pb.ExpirationPolicy.Ttl; ttl != nil {
		if d := ttl.AsDuration(); d < 24*time.Hour {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid expiration_policy.ttl %v: the minimum is 1 day; leave ttl unset for a subscription that never expires.", d)
		}
	}
	f, err := parseFilter(pb.Filter)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid filter expression %q: %v.", pb.Filter, err)
	}
	if dlp := pb.DeadLetterPolicy; dlp != nil {
		if _, _, err := parseName(dlp.DeadLetterTopic, "topics"); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid dead_letter_policy.dead_letter_topic: %s", status.Convert(err).Message())
		}
		if dlp.MaxDeliveryAttempts == 0 {
			dlp.MaxDeliveryAttempts = 5
		}
		if dlp.MaxDeliveryAttempts < 5 {
			return nil, status.Errorf(codes.OutOfRange, "The value for max_delivery_attempts is too small. You passed %d in the request, but the minimum value is 5.", dlp.MaxDeliveryAttempts)
		}
		if dlp.MaxDeliveryAttempts > 100 {
			return nil, status.Errorf(codes.OutOfRange, "The value for max_delivery_attempts is too large. You passed %d in the request, but the maximum value is 100.", dlp.MaxDeliveryAttempts)
		}
	}
	if rp := pb.RetryPolicy; rp != nil {
		lo, hi := 10*time.Second, 600*time.Second
		if rp.MinimumBackoff != nil {
			lo = rp.MinimumBackoff.AsDuration()
		}
		if rp.MaximumBackoff != nil {
			hi = rp.MaximumBackoff.AsDuration()
		}
		if lo < 0 || hi > 600*time.Second || lo > hi {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid retry_policy: minimum_backoff %v and maximum_backoff %v must satisfy 0 <= minimum <= maximum <= 600s.", lo, hi)
		}
	}
	if pc := pb.PushConfig; pc != nil && pc.PushEndpoint != "" {
		if err := checkEndpoint(pc.PushEndpoint); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return status.Errorf(codes.InvalidArgument, "Invalid push_endpoint %q: it must be an absolute http or https URL.", ep)
	}
	return nil
}

func (p *subscriberService) CreateSubscription(ctx context.Context, req *pubsubpb.Subscription) (*pubsubpb.Subscription, error) {
	if _, _, err := parseName(req.Name, "subscriptions"); err != nil {
		return nil, err
	}
	if _, _, err := parseName(req.Topic, "topics"); err != nil {
		return nil, err
	}
	pb := clone(req)
	f, err := checkSub(pb)
	if err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	if s := e.subs[pb.Name]; s != nil && !e.expiredSubLocked(s, now) {
		return nil, status.Errorf(codes.AlreadyExists, "Subscription already exists (resource=%s).", pb.Name)
	}
	t := e.topics[pb.Topic]
	if t == nil {
		return nil, status.Errorf(codes.NotFound, "Subscription topic does not exist (resource=%s).", pb.Topic)
	}
	pb.State = pubsubpb.Subscription_ACTIVE
	pb.TopicMessageRetentionDuration = t.pb.MessageRetentionDuration
	if err := e.record(&logRecord{Op: opSubPut, PB: mustMarshal(pb), Time: logTime(now)}); err != nil {
		return nil, err
	}
	s := e.putSubLocked(pb, f)
	s.active, s.activeLogged = now, now
	return clone(pb), nil
}

// putSubLocked creates a subscription or replaces an existing one's
// settings, starting or stopping its push worker as needed.
func (e *engine) putSubLocked(pb *pubsubpb.Subscription, f filter) *subscription {
	s := e.subs[pb.Name]
	if s == nil {
		s = newSubscription(e, pb, f)
		e.subs[pb.Name] = s
		if t := e.topics[pb.Topic]; t != nil && !pb.Detached {
			s.topic = t
			t.subs[pb.Name] = s
		}
	} else {
		s.pb = pb
		s.filter = f
	}
	push := pb.GetPushConfig().GetPushEndpoint() != ""
	switch {
	case push && s.pusher == nil && !pb.Detached && !e.closed:
		s.pusher = e.startPusher(s)
	case push && s.pusher != nil:
		s.pusher.configure()
	case !push && s.pusher != nil:
		s.pusher.stop()
		s.pusher = nil
	}
	s.dispatchLocked()
	return s
}

func (p *subscriberService) GetSubscription(ctx context.Context, req *pubsubpb.GetSubscriptionRequest) (*pubsubpb.Subscription, error) {
	s, unlock, err := p.e.lockSub(req.Subscription)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return clone(s.pb), nil
}

// lockSub validates name, locks the engine and finds the subscription.
func (e *engine) lockSub(name string) (*subscription, func(), error) {
	if _, _, err := parseName(name, "subscriptions"); err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	s := e.subs[name]
	if s == nil || e.expiredSubLocked(s, e.now()) {
		e.mu.Unlock()
		return nil, nil, errSubNotFound(name)
	}
	return s, e.mu.Unlock, nil
}

var subUpdatable = map[string]bool{
	"ack_deadline_seconds": true, "labels": true, "push_config": true, "retain_acked_messages": true,
	"message_retention_duration": true, "expiration_policy": true, "dead_letter_policy": true,
	"retry_policy": true, "enable_exactly_once_delivery": true, "bigquery_config": true,
	"cloud_storage_config": true, "message_transforms": true,
}

func (p *subscriberService) UpdateSubscription(ctx context.Context, req *pubsubpb.UpdateSubscriptionRequest) (*pubsubpb.Subscription, error) {
	if req.Subscription == nil {
		return nil, status.Error(codes.InvalidArgument, "The subscription field in the UpdateSubscriptionRequest must be set.")
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "The update_mask in the UpdateSubscriptionRequest must be set, and must name at least one field.")
	}
	for _, path := range paths {
		if !subUpdatable[path] {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid update_mask provided in the UpdateSubscriptionRequest: the '%s' field cannot be updated.", path)
		}
	}
	s, unlock, err := p.e.lockSub(req.Subscription.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	pb := clone(s.pb)
	if err := applyMask(pb, req.Subscription, paths); err != nil {
		return nil, err
	}
	f, err := checkSub(pb)
	if err != nil {
		return nil, err
	}
	if err := p.e.record(&logRecord{Op: opSubPut, PB: mustMarshal(pb), Time: logTime(p.e.now())}); err != nil {
		return nil, err
	}
	p.e.putSubLocked(pb, f)
	s.touchLocked()
	return clone(pb), nil
}

func (p *subscriberService) ListSubscriptions(ctx context.Context, req *pubsubpb.ListSubscriptionsRequest) (*pubsubpb.ListSubscriptionsResponse, error) {
	if _, err := parseProject(req.Project); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sweepLocked()
	var names []string
	prefix := req.Project + "/subscriptions/"
	for n := range e.subs {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	names, next := page(names, req.PageSize, req.PageToken)
	res := &pubsubpb.ListSubscriptionsResponse{NextPageToken: next}
	for _, n := range names {
		res.Subscriptions = append(res.Subscriptions, clone(e.subs[n].pb))
	}
	return res, nil
}

func (p *subscriberService) DeleteSubscription(ctx context.Context, req *pubsubpb.DeleteSubscriptionRequest) (*emptypb.Empty, error) {
	s, unlock, err := p.e.lockSub(req.Subscription)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := p.e.record(&logRecord{Op: opSubDel, Name: req.Subscription}); err != nil {
		return nil, err
	}
	p.e.deleteSubLocked(s)
	return &emptypb.Empty{}, nil
}

func (e *engine) deleteSubLocked(s *subscription) {
	s.stopLocked(errSubNotFound(s.pb.Name))
	if s.topic != nil {
		delete(s.topic.subs, s.pb.Name)
	}
	delete(e.subs, s.pb.Name)
}

func (p *subscriberService) ModifyPushConfig(ctx context.Context, req *pubsubpb.ModifyPushConfigRequest) (*emptypb.Empty, error) {
	if req.PushConfig == nil {
		return nil, status.Error(codes.InvalidArgument, "The push_config field in the ModifyPushConfigRequest must be set (an empty PushConfig makes it a pull subscription).")
	}
	if ep := req.PushConfig.PushEndpoint; ep != "" {
		if err := checkEndpoint(ep); err != nil {
			return nil, err
		}
	}
	s, unlock, err := p.e.lockSub(req.Subscription)
	if err != nil {
		return nil, err
	}
	defer unlock()
	pb := clone(s.pb)
	pb.PushConfig = clone(req.PushConfig)
	if err := p.e.record(&logRecord{Op: opSubPut, PB: mustMarshal(pb), Time: logTime(p.e.now())}); err != nil {
		return nil, err
	}
	p.e.putSubLocked(pb, s.filter)
	s.touchLocked()
	return &emptypb.Empty{}, nil
}

func (s *subscription) usable() error {
	if s.pb.Detached {
		return status.Errorf(codes.FailedPrecondition, "Subscription %s is detached from its topic.", s.pb.Name)
	}
	return nil
}

func (p *subscriberService) Pull(ctx context.Context, req *pubsubpb.PullRequest) (*pubsubpb.PullResponse, error) {
	if req.MaxMessages <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid max_messages %d: it must be greater than 0.", req.MaxMessages)
	}
	s, unlock, err := p.e.lockSub(req.Subscription)
	if err != nil {
		return nil, err
	}
	if err := s.usable(); err != nil {
		unlock()
		return nil, err
	}
	s.touchLocked()
	c := &consumer{
		sub:     s,
		maxMsgs: int64(req.MaxMessages),
		// Responses stay within what the client libraries read (20 MiB):
		// past 10 MiB a Pull takes no more messages.
		maxBytes: maxPullBytes,
		deadline: time.Duration(s.pb.AckDeadlineSeconds) * time.Second,
		oneShot:  true,
		notify:   make(chan struct{}, 1),
	}
	s.addConsumerLocked(c)
	//lint:ignore SA1019 deprecated for clients, still honoured by the real service
	if len(c.pending) == 0 && !req.ReturnImmediately {
		unlock()
		wait := time.NewTimer(60 * time.Second)
		select {
		case <-c.notify:
		case <-ctx.Done():
		case <-wait.C:
		}
		wait.Stop()
		p.e.mu.Lock()
	}
	defer p.e.mu.Unlock()
	if ctx.Err() != nil {
		s.removeConsumerLocked(c)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if c.err != nil {
		return nil, c.err
	}
	res := &pubsubpb.PullResponse{ReceivedMessages: c.pending}
	c.pending, c.pendingSM = nil, nil
	if !c.removed {
		s.removeConsumerLocked(c)
	}
	return res, nil
}

// ackFailure is how the real service reports, in an exactly-once
// subscription, ack IDs that failed: INVALID_ARGUMENT with an ErrorInfo
// whose metadata maps each ack ID to its failure.
func ackFailure(invalid, retry []string) error {
	md := make(map[string]string, len(invalid)+len(retry))
	for _, id := range invalid {
		md[id] = "PERMANENT_FAILURE_INVALID_ACK_ID"
	}
	for _, id := range retry {
		md[id] = "TRANSIENT_FAILURE_OTHER"
	}
	st, err := status.New(codes.InvalidArgument, "Some acknowledgement ids in the request were invalid. This could be because the acknowledgement ids have expired or the acknowledgement ids were malformed.").
		WithDetails(&errdetails.ErrorInfo{Reason: "EXACTLY_ONCE_ACKID_FAILURE", Domain: "pubsub.googleapis.com", Metadata: md})
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return st.Err()
}

// validAckLocked finds the message an ack ID may act on now: in an
// exactly-once subscription only a current, unexpired delivery; otherwise
// also one whose deadline passed but that was not redelivered yet.
func (s *subscription) validAckLocked(id string, now time.Time) *subMsg {
	sm := s.byAck[id]
	if sm == nil {
		return nil
	}
	if s.eod() {
		if sm.st != stOutstanding || !now.Before(sm.due) {
			return nil
		}
		return sm
	}
	switch sm.st {
	case stOutstanding, stReady, stDelayed:
		return sm
	}
	return nil
}

// ackLocked acks ids. In an exactly-once subscription, when any is
// invalid, nothing is acked: the invalid ones fail for good and the others
// are reported as transient failures so clients retry them.
//
// The acks are recorded before they take effect; when the data log
// refuses, nothing is acked and err says why.
func (s *subscription) ackIDsLocked(ids []string, now time.Time, partial bool) (ok, invalid []string, err error) {
	found := make([]*subMsg, 0, len(ids))
	for _, id := range ids {
		if sm := s.validAckLocked(id, now); sm != nil {
			found = append(found, sm)
			ok = append(ok, id)
		} else {
			invalid = append(invalid, id)
		}
	}
	if s.eod() && len(invalid) > 0 && !partial {
		return ok, invalid, nil
	}
	if s.e.log != nil && len(found) > 0 {
		seqs := make([]uint64, len(found))
		for i, sm := range found {
			seqs[i] = sm.m.seq
		}
		if err := s.e.record(&logRecord{Op: opAck, Name: s.pb.Name, Seqs: seqs}); err != nil {
			return nil, nil, err
		}
	}
	for _, sm := range found {
		s.ackLocked(sm)
	}
	s.dispatchLocked()
	return ok, invalid, nil
}

// checkAckIDs rejects ack IDs this emulator cannot have issued, as the
// real service rejects malformed ones. Well-formed but unknown or stale
// ones pass (and fail per ID in exactly-once subscriptions).
//
// The service's limits apply: at most 2,500 ack IDs, and 512 KiB, per
// request.
func checkAckIDs(ids []string, req proto.Message) error {
	if len(ids) == 0 {
		return status.Error(codes.InvalidArgument, "No ack_ids were given: the request must contain at least one ack ID.")
	}
	if len(ids) > maxAckIDs {
		return status.Errorf(codes.InvalidArgument, "The value for ack_id_count is too large. You passed %d in the request, but the maximum value is %d.", len(ids), maxAckIDs)
	}
	if n := proto.Size(req); n > maxAckRequestBytes {
		return status.Errorf(codes.InvalidArgument, "Request payload size exceeds the limit: %d bytes (this request is %d bytes); send fewer ack IDs per request.", maxAckRequestBytes, n)
	}
	for _, id := range ids {
		if !wellFormedAckID(id) {
			return status.Errorf(codes.InvalidArgument, "Invalid ack id (ack_id=%s).", id)
		}
	}
	return nil
}

// wellFormedAckID reports whether id has the shape of nextAckID's IDs:
// two base-36 numbers joined by "-".
func wellFormedAckID(id string) bool {
	a, b, ok := strings.Cut(id, "-")
	if !ok || a == "" || b == "" {
		return false
	}
	for _, c := range a + b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// The service's limits on Acknowledge and ModifyAckDeadline requests, and
// on what one Pull returns.
const (
	maxAckIDs          = 2500
	maxAckRequestBytes = 512 << 10
	maxPullBytes       = 10 << 20
)

func (p *subscriberService) Acknowledge(ctx context.Context, req *pubsubpb.AcknowledgeRequest) (*emptypb.Empty, error) {
	if err := checkAckIDs(req.AckIds, req); err != nil {
		return nil, err
	}
	s, unlock, err := p.e.lockSub(req.Subscription)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s.touchLocked()
	ok, invalid, err := s.ackIDsLocked(req.AckIds, time.Now(), false)
	if err != nil {
		return nil, err
	}
	if s.eod() && len(invalid) > 0 {
		return nil, ackFailure(invalid, ok)
	}
	return &emptypb.Empty{}, nil
}

// modAckLocked sets the deadline of ids to secs from now; 0 nacks them.
func (s *subscription) modAckLocked(ids []string, secs int32, now time.Time, partial bool) (ok, invalid []string) {
	found := make([]*subMsg, 0, len(ids))
	for _, id := range ids {
		sm := s.validAckLocked(id, now)
		if sm != nil && sm.st == stOutstanding {
			found = append(found, sm)
			ok = append(ok, id)
		} else if s.eod() {
			invalid = append(invalid, id)
		}
	}
	if s.eod() && len(invalid) > 0 && !partial {
		return ok, invalid
	}
	for _, sm := range found {
		if secs == 0 {
			s.nackLocked(sm, now, false)
			continue
		}
		sm.due = now.Add(time.Duration(secs) * time.Second)
		heap.Fix(&s.timed, sm.tidx)
	}
	s.armLocked()
	s.dispatchLocked()
	return ok, invalid
}

func checkDeadline(secs int32) error {
	if secs < 0 || secs > 600 {
		return status.Errorf(codes.InvalidArgument, "Invalid ack deadline %d seconds: it must be between 0 and 600.", secs)
	}
	return nil
}

func (p *subscriberService) ModifyAckDeadline(ctx context.Context, req *pubsubpb.ModifyAckDeadlineRequest) (*emptypb.Empty, error) {
	if err := checkDeadline(req.AckDeadlineSeconds); err != nil {
		return nil, err
	}
	if err := checkAckIDs(req.AckIds, req); err != nil {
		return nil, err
	}
	s, unlock, err := p.e.lockSub(req.Subscription)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s.touchLocked()
	ok, invalid := s.modAckLocked(req.AckIds, req.AckDeadlineSeconds, time.Now(), false)
	if s.eod() && len(invalid) > 0 {
		return nil, ackFailure(invalid, ok)
	}
	return &emptypb.Empty{}, nil
}

// --- snapshots and seek ---

func (p *subscriberService) CreateSnapshot(ctx context.Context, req *pubsubpb.CreateSnapshotRequest) (*pubsubpb.Snapshot, error) {
	if _, _, err := parseName(req.Name, "snapshots"); err != nil {
		return nil, err
	}
	s, unlock, err := p.e.lockSub(req.Subscription)
	if err != nil {
		return nil, err
	}
	defer unlock()
	e := p.e
	now := e.now()
	if sn := e.snapshots[req.Name]; sn != nil && !e.expiredSnapLocked(sn, now) {
		return nil, status.Errorf(codes.AlreadyExists, "Snapshot already exists (resource=%s).", req.Name)
	}
	if s.topic == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "Subscription %s has no topic (it was deleted or detached); a snapshot needs one.", s.pb.Name)
	}
	pb := &pubsubpb.Snapshot{Name: req.Name, Topic: s.pb.Topic, Labels: req.Labels}
	if err := e.record(&logRecord{Op: opSnapPut, PB: mustMarshal(pb), Sub: s.pb.Name, Time: logTime(now)}); err != nil {
		return nil, err
	}
	sn := e.createSnapshotLocked(pb, s, now, nil)
	return clone(sn.pb), nil
}

// createSnapshotLocked makes a snapshot of s's unacked messages (or of
// msgs, when restoring one from the log).
func (e *engine) createSnapshotLocked(pb *pubsubpb.Snapshot, s *subscription, now time.Time, msgs []*message) *snapshot {
	if s != nil {
		s.msgs.all(func(sm *subMsg) {
			if sm.st != stAcked {
				msgs = append(msgs, sm.m)
			}
		})
	}
	oldest := now
	if len(msgs) > 0 && msgs[0].publish.Before(now) {
		oldest = msgs[0].publish
	}
	pb.ExpireTime = ts(oldest.Add(7 * 24 * time.Hour))
	sn := &snapshot{pb: pb, topic: pb.Topic, made: now, msgs: msgs}
	e.snapshots[pb.Name] = sn
	if t := e.topics[pb.Topic]; t != nil {
		t.snaps[pb.Name] = sn
	}
	return sn
}

func (p *subscriberService) GetSnapshot(ctx context.Context, req *pubsubpb.GetSnapshotRequest) (*pubsubpb.Snapshot, error) {
	if _, _, err := parseName(req.Snapshot, "snapshots"); err != nil {
		return nil, err
	}
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	sn := p.e.snapshots[req.Snapshot]
	if sn == nil || p.e.expiredSnapLocked(sn, p.e.now()) {
		return nil, errSnapshotNotFound(req.Snapshot)
	}
	return clone(sn.pb), nil
}

func (p *subscriberService) ListSnapshots(ctx context.Context, req *pubsubpb.ListSnapshotsRequest) (*pubsubpb.ListSnapshotsResponse, error) {
	if _, err := parseProject(req.Project); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sweepLocked()
	var names []string
	prefix := req.Project + "/snapshots/"
	for n := range e.snapshots {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	names, next := page(names, req.PageSize, req.PageToken)
	res := &pubsubpb.ListSnapshotsResponse{NextPageToken: next}
	for _, n := range names {
		res.Snapshots = append(res.Snapshots, clone(e.snapshots[n].pb))
	}
	return res, nil
}

func (p *subscriberService) UpdateSnapshot(ctx context.Context, req *pubsubpb.UpdateSnapshotRequest) (*pubsubpb.Snapshot, error) {
	if req.Snapshot == nil {
		return nil, status.Error(codes.InvalidArgument, "The snapshot field in the UpdateSnapshotRequest must be set.")
	}
	if _, _, err := parseName(req.Snapshot.Name, "snapshots"); err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "The update_mask in the UpdateSnapshotRequest must be set, and must name at least one field.")
	}
	for _, path := range paths {
		if path != "labels" && path != "expire_time" {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid update_mask provided in the UpdateSnapshotRequest: the '%s' field cannot be updated.", path)
		}
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	sn := e.snapshots[req.Snapshot.Name]
	if sn == nil || e.expiredSnapLocked(sn, e.now()) {
		return nil, errSnapshotNotFound(req.Snapshot.Name)
	}
	pb := clone(sn.pb)
	if err := applyMask(pb, req.Snapshot, paths); err != nil {
		return nil, err
	}
	if err := e.record(&logRecord{Op: opSnapUpd, PB: mustMarshal(pb)}); err != nil {
		return nil, err
	}
	sn.pb = pb
	return clone(pb), nil
}

func (p *subscriberService) DeleteSnapshot(ctx context.Context, req *pubsubpb.DeleteSnapshotRequest) (*emptypb.Empty, error) {
	if _, _, err := parseName(req.Snapshot, "snapshots"); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if sn := e.snapshots[req.Snapshot]; sn == nil || e.expiredSnapLocked(sn, e.now()) {
		return nil, errSnapshotNotFound(req.Snapshot)
	}
	if err := e.record(&logRecord{Op: opSnapDel, Name: req.Snapshot}); err != nil {
		return nil, err
	}
	e.deleteSnapshotLocked(req.Snapshot)
	return &emptypb.Empty{}, nil
}

func (e *engine) deleteSnapshotLocked(name string) {
	sn := e.snapshots[name]
	if t := e.topics[sn.topic]; t != nil {
		delete(t.snaps, name)
	}
	delete(e.snapshots, name)
}

func (p *subscriberService) Seek(ctx context.Context, req *pubsubpb.SeekRequest) (*pubsubpb.SeekResponse, error) {
	snapName := req.GetSnapshot()
	when := req.GetTime()
	if snapName == "" && when == nil {
		return nil, status.Error(codes.InvalidArgument, "The SeekRequest must set either time or snapshot.")
	}
	if snapName != "" {
		if _, _, err := parseName(snapName, "snapshots"); err != nil {
			return nil, err
		}
	}
	if when != nil {
		if err := when.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid seek time: %v; it must be between 0001-01-01 and 9999-12-31.", err)
		}
	}
	s, unlock, err := p.e.lockSub(req.Subscription)
	if err != nil {
		return nil, err
	}
	defer unlock()
	e := p.e
	s.touchLocked()
	rec := &logRecord{Op: opSeek, Name: s.pb.Name}
	if snapName != "" {
		sn := e.snapshots[snapName]
		if sn == nil || e.expiredSnapLocked(sn, e.now()) {
			return nil, errSnapshotNotFound(snapName)
		}
		if sn.topic != s.pb.Topic {
			return nil, status.Errorf(codes.FailedPrecondition, "Snapshot %s is of topic %s, but subscription %s is of topic %s; seek only to a snapshot of the same topic.", snapName, sn.topic, s.pb.Name, s.pb.Topic)
		}
		rec.Sub = snapName
		if err := e.record(rec); err != nil {
			return nil, err
		}
		s.seekSnapshotLocked(sn)
	} else {
		t := seekTime(when.AsTime(), e.now())
		rec.Time = t.UnixNano()
		if err := e.record(rec); err != nil {
			return nil, err
		}
		s.seekTimeLocked(t)
	}
	return &pubsubpb.SeekResponse{}, nil
}

// seekTime brings a seek time into the range the data log holds (years
// 1678 to 2262) without changing what the seek does: every message there is
// was published by now, so a seek to any later time acks them all, as a
// seek to just after now does; and none was published before 1678.
func seekTime(t, now time.Time) time.Time {
	if t.After(now) {
		return now.Add(time.Nanosecond)
	}
	if t.Before(minLogTime) {
		return minLogTime
	}
	return t
}

// seekTimeLocked marks messages published before t acked and the others
// unacked. Messages come back from what the subscription still holds
// (unacked, or acked and retained) and from its topic's retained log,
// which may reach back before the subscription was made.
func (s *subscription) seekTimeLocked(t time.Time) {
	s.resetLocked()
	var back []*subMsg
	expired := s.e.now().Add(-s.retention())
	s.msgs.all(func(sm *subMsg) {
		if sm.m.publish.Before(expired) {
			s.msgs.remove(sm) // past the subscription's retention: gone for good
			return
		}
		if sm.m.publish.Before(t) {
			sm.st = stAcked
			if !s.pb.RetainAckedMessages {
				s.msgs.remove(sm)
			}
		} else {
			back = append(back, sm)
		}
	})
	if s.topic != nil {
		for _, m := range s.topic.log {
			if m.publish.Before(t) || s.msgs.get(m.seq) != nil || (s.filter != nil && !s.filter.match(m.pb.Attributes)) {
				continue
			}
			sm := &subMsg{m: m, tidx: -1, ridx: -1}
			s.msgs.add(sm)
			back = append(back, sm)
		}
	}
	s.requeueLocked(back)
}

// seekSnapshotLocked makes exactly the snapshot's messages (those the
// subscription's filter passes) unacked.
func (s *subscription) seekSnapshotLocked(sn *snapshot) {
	s.resetLocked()
	in := make(map[uint64]bool, len(sn.msgs))
	var back []*subMsg
	for _, m := range sn.msgs {
		if s.filter != nil && !s.filter.match(m.pb.Attributes) {
			continue
		}
		in[m.seq] = true
		sm := s.msgs.get(m.seq)
		if sm == nil {
			sm = &subMsg{m: m, tidx: -1, ridx: -1}
			s.msgs.add(sm)
		}
		back = append(back, sm)
	}
	s.msgs.all(func(sm *subMsg) {
		if !in[sm.m.seq] {
			sm.st = stAcked
			if !s.pb.RetainAckedMessages {
				s.msgs.remove(sm)
			}
		}
	})
	s.requeueLocked(back)
}

func (s *subscription) requeueLocked(back []*subMsg) {
	sort.Slice(back, func(i, j int) bool { return back[i].m.seq < back[j].m.seq })
	for _, sm := range back {
		s.enqueueLocked(sm)
	}
	s.dispatchLocked()
}

package emulator

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type publisherService struct {
	pubsubpb.UnimplementedPublisherServer
	e *engine
}

func clone[T proto.Message](m T) T { return proto.Clone(m).(T) }

func checkTopicRetention(t *pubsubpb.Topic) error {
	if d := t.GetMessageRetentionDuration(); d != nil {
		if v := d.AsDuration(); v < 10*time.Minute || v > 31*24*time.Hour {
			return status.Errorf(codes.InvalidArgument, "Invalid message_retention_duration %v: it must be between 10 minutes and 31 days", v)
		}
	}
	return nil
}

func (p *publisherService) CreateTopic(ctx context.Context, t *pubsubpb.Topic) (*pubsubpb.Topic, error) {
	if _, _, err := parseName(t.Name, "topics"); err != nil {
		return nil, err
	}
	if err := checkTopicRetention(t); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.topics[t.Name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "Topic already exists (resource=%s).", t.Name)
	}
	if err := e.checkSchemaSettingsLocked(t.SchemaSettings); err != nil {
		return nil, err
	}
	pb := clone(t)
	pb.State = pubsubpb.Topic_ACTIVE
	if err := e.record(&logRecord{Op: opTopicPut, PB: mustMarshal(pb)}); err != nil {
		return nil, err
	}
	e.createTopicLocked(pb)
	return clone(pb), nil
}

func (e *engine) createTopicLocked(pb *pubsubpb.Topic) {
	e.topics[pb.Name] = &topic{pb: pb, subs: make(map[string]*subscription), snaps: make(map[string]*snapshot)}
}

var topicUpdatable = map[string]bool{
	"labels": true, "message_storage_policy": true, "kms_key_name": true, "schema_settings": true,
	"message_retention_duration": true, "ingestion_data_source_settings": true, "message_transforms": true, "tags": true,
}

func (p *publisherService) UpdateTopic(ctx context.Context, req *pubsubpb.UpdateTopicRequest) (*pubsubpb.Topic, error) {
	if req.Topic == nil {
		return nil, status.Error(codes.InvalidArgument, "The topic field in the UpdateTopicRequest must be set.")
	}
	if _, _, err := parseName(req.Topic.Name, "topics"); err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "The update_mask in the UpdateTopicRequest must be set, and must name at least one field.")
	}
	for _, path := range paths {
		if !topicUpdatable[path] {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid update_mask provided in the UpdateTopicRequest: the '%s' field cannot be updated.", path)
		}
	}
	if err := checkTopicRetention(req.Topic); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.topics[req.Topic.Name]
	if t == nil {
		return nil, errTopicNotFound(req.Topic.Name)
	}
	pb := clone(t.pb)
	if err := applyMask(pb, req.Topic, paths); err != nil {
		return nil, err
	}
	if slices.Contains(paths, "schema_settings") {
		if err := e.checkSchemaSettingsLocked(pb.SchemaSettings); err != nil {
			return nil, err
		}
	}
	if err := e.record(&logRecord{Op: opTopicPut, PB: mustMarshal(pb)}); err != nil {
		return nil, err
	}
	t.pb = pb
	t.retainLocked(nil, e.now())
	return clone(pb), nil
}

// applyMask copies the top-level fields named by paths from src to dst.
func applyMask(dst, src proto.Message, paths []string) error {
	dr, sr := dst.ProtoReflect(), src.ProtoReflect()
	fields := dr.Descriptor().Fields()
	for _, path := range paths {
		fd := fields.ByName(protoName(path))
		if fd == nil {
			return status.Errorf(codes.InvalidArgument, "Invalid update_mask: unknown field '%s'.", path)
		}
		if sr.Has(fd) {
			dr.Set(fd, sr.Get(fd))
		} else {
			dr.Clear(fd)
		}
	}
	return nil
}

// The service's limits on what one publish request may hold.
const (
	maxPublishBytes    = 10 << 20 // a whole PublishRequest, encoded
	maxPublishMessages = 1000
	maxAttributes      = 100
	maxAttrKeyBytes    = 256
	maxAttrValueBytes  = 1024
	maxOrderingKey     = 1024
)

// checkPublish applies the service's limits to a publish request, with
// the service's InvalidArgument errors.
func checkPublish(req *pubsubpb.PublishRequest) error {
	if len(req.Messages) == 0 {
		return status.Error(codes.InvalidArgument, "The request must contain at least one message.")
	}
	if n := len(req.Messages); n > maxPublishMessages {
		return status.Errorf(codes.InvalidArgument, "The value for message_count is too large. You passed %d in the request, but the maximum value is %d.", n, maxPublishMessages)
	}
	// bound is at least the request's encoded size (each field's tag and
	// length take at most 6 bytes); proto.Size is asked only near the limit.
	bound := len(req.Topic) + 8
	for i, m := range req.Messages {
		bound += len(m.Data) + len(m.OrderingKey) + 32
		if len(m.Data) == 0 && len(m.Attributes) == 0 {
			return status.Error(codes.InvalidArgument, "Some messages in the publish request are empty. Each message must contain either non-empty data, or at least one attribute.")
		}
		if n := len(m.Attributes); n > maxAttributes {
			return status.Errorf(codes.InvalidArgument, "Message %d has %d attributes; the maximum is %d.", i, n, maxAttributes)
		}
		for k, v := range m.Attributes {
			bound += len(k) + len(v) + 24
			if k == "" || len(k) > maxAttrKeyBytes {
				return status.Errorf(codes.InvalidArgument, "Invalid attribute key %.40q… (%d bytes) in message %d: keys must be 1 to %d bytes.", k, len(k), i, maxAttrKeyBytes)
			}
			if len(v) > maxAttrValueBytes {
				return status.Errorf(codes.InvalidArgument, "The value of attribute %q in message %d is %d bytes; the maximum is %d bytes.", k, i, len(v), maxAttrValueBytes)
			}
		}
		if n := len(m.OrderingKey); n > maxOrderingKey {
			return status.Errorf(codes.InvalidArgument, "The ordering key of message %d is %d bytes; the maximum is %d bytes.", i, n, maxOrderingKey)
		}
	}
	if bound > maxPublishBytes && proto.Size(req) > maxPublishBytes {
		return status.Errorf(codes.InvalidArgument, "Request payload size exceeds the limit: %d bytes.", maxPublishBytes)
	}
	return nil
}

func (p *publisherService) Publish(ctx context.Context, req *pubsubpb.PublishRequest) (*pubsubpb.PublishResponse, error) {
	if _, _, err := parseName(req.Topic, "topics"); err != nil {
		return nil, err
	}
	if err := checkPublish(req); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.topics[req.Topic]
	if t == nil {
		return nil, errTopicNotFound(req.Topic)
	}
	if ss := t.pb.GetSchemaSettings(); ss != nil {
		// Check every message before changing any: the request is all or
		// nothing.
		type stampAttrs struct{ name, rev string }
		got := make([]stampAttrs, len(req.Messages))
		for i, m := range req.Messages {
			name, rev, err := e.conformLocked(ss, i, m.Data)
			if err != nil {
				return nil, err
			}
			got[i] = stampAttrs{name, rev}
		}
		enc := ss.Encoding.String()
		for i, m := range req.Messages {
			if m.Attributes == nil {
				m.Attributes = make(map[string]string, 3)
			}
			m.Attributes["googclient_schemaname"] = got[i].name
			m.Attributes["googclient_schemaencoding"] = enc
			m.Attributes["googclient_schemarevisionid"] = got[i].rev
		}
	}
	now := e.now()
	pt := ts(now)
	msgs := make([]*message, len(req.Messages))
	ids := make([]string, len(req.Messages))
	for i, m := range req.Messages {
		e.seq++
		// The request is ours once the handler has it; its messages become
		// the stored ones, all sharing one publish timestamp.
		msgs[i] = stamp(m, e.seq, now, pt)
		ids[i] = m.MessageId
	}
	if e.log != nil {
		if err := e.record(publishRecord(t.pb.Name, msgs, nil)); err != nil {
			return nil, err // the sequence numbers stay used: IDs are never reused
		}
	}
	e.fanOutLocked(t, msgs, nil)
	return &pubsubpb.PublishResponse{MessageIds: ids}, nil
}

// fanOutLocked stores msgs in the topic's subscriptions whose filter they
// pass (only those in only, when only is not nil) and in its snapshots.
func (e *engine) fanOutLocked(t *topic, msgs []*message, only []string) {
	for name, s := range t.subs {
		if s.pb.Detached || (only != nil && !slices.Contains(only, name)) {
			continue
		}
		for _, m := range msgs {
			if s.filter == nil || s.filter.match(m.pb.Attributes) {
				s.addLocked(m)
			}
		}
		s.dispatchLocked()
	}
	if only == nil {
		for _, sn := range t.snaps {
			sn.msgs = append(sn.msgs, msgs...)
		}
		if t.pb.MessageRetentionDuration != nil && len(msgs) > 0 {
			t.retainLocked(msgs, msgs[len(msgs)-1].publish)
		}
	}
}

// deadLetterLocked forwards sm to the dead-letter topic, once, with the
// attributes the real service adds, and removes it from s. It reports
// false, changing nothing, when the data log cannot record the move.
func (e *engine) deadLetterLocked(s *subscription, sm *subMsg, dlt *topic) bool {
	attrs := make(map[string]string, len(sm.m.pb.Attributes)+4)
	for k, v := range sm.m.pb.Attributes {
		attrs[k] = v
	}
	project, id, _ := parseName(s.pb.Name, "subscriptions")
	attrs["CloudPubSubDeadLetterSourceDeliveryCount"] = strconv.Itoa(int(sm.attempts))
	attrs["CloudPubSubDeadLetterSourceSubscription"] = id
	attrs["CloudPubSubDeadLetterSourceSubscriptionProject"] = project
	attrs["CloudPubSubDeadLetterSourceTopicPublishTime"] = sm.m.publish.UTC().Format(time.RFC3339Nano)
	e.seq++
	m := newMessage(e.seq, e.now(), sm.m.pb.Data, attrs, sm.m.pb.OrderingKey)
	if e.log != nil {
		rec := &logRecord{Op: opDeadLet, Name: s.pb.Name, Sub: dlt.pb.Name, Msgs: toLogMsgs([]*message{m}), Seqs: []uint64{sm.m.seq}}
		if e.record(rec) != nil {
			return false
		}
	}
	e.fanOutLocked(dlt, []*message{m}, nil)
	s.dropLocked(sm)
	return true
}

func (p *publisherService) GetTopic(ctx context.Context, req *pubsubpb.GetTopicRequest) (*pubsubpb.Topic, error) {
	if _, _, err := parseName(req.Topic, "topics"); err != nil {
		return nil, err
	}
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	t := p.e.topics[req.Topic]
	if t == nil {
		return nil, errTopicNotFound(req.Topic)
	}
	return clone(t.pb), nil
}

// page returns the page of sorted names after token.
func page(names []string, size int32, token string) ([]string, string) {
	sort.Strings(names)
	start := 0
	if token != "" {
		start = sort.SearchStrings(names, token)
		if start < len(names) && names[start] == token {
			start++
		}
	}
	names = names[start:]
	if size <= 0 || size > 1000 {
		size = 1000
	}
	if len(names) > int(size) {
		return names[:size], names[size-1]
	}
	return names, ""
}

func (p *publisherService) ListTopics(ctx context.Context, req *pubsubpb.ListTopicsRequest) (*pubsubpb.ListTopicsResponse, error) {
	if _, err := parseProject(req.Project); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	var names []string
	prefix := req.Project + "/topics/"
	for n := range e.topics {
		if len(n) > len(prefix) && n[:len(prefix)] == prefix {
			names = append(names, n)
		}
	}
	names, next := page(names, req.PageSize, req.PageToken)
	res := &pubsubpb.ListTopicsResponse{NextPageToken: next}
	for _, n := range names {
		res.Topics = append(res.Topics, clone(e.topics[n].pb))
	}
	return res, nil
}

func (p *publisherService) ListTopicSubscriptions(ctx context.Context, req *pubsubpb.ListTopicSubscriptionsRequest) (*pubsubpb.ListTopicSubscriptionsResponse, error) {
	if _, _, err := parseName(req.Topic, "topics"); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.topics[req.Topic]
	if t == nil {
		return nil, errTopicNotFound(req.Topic)
	}
	var names []string
	for n := range t.subs {
		names = append(names, n)
	}
	names, next := page(names, req.PageSize, req.PageToken)
	return &pubsubpb.ListTopicSubscriptionsResponse{Subscriptions: names, NextPageToken: next}, nil
}

func (p *publisherService) ListTopicSnapshots(ctx context.Context, req *pubsubpb.ListTopicSnapshotsRequest) (*pubsubpb.ListTopicSnapshotsResponse, error) {
	if _, _, err := parseName(req.Topic, "topics"); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.topics[req.Topic]
	if t == nil {
		return nil, errTopicNotFound(req.Topic)
	}
	var names []string
	for n := range t.snaps {
		names = append(names, n)
	}
	names, next := page(names, req.PageSize, req.PageToken)
	return &pubsubpb.ListTopicSnapshotsResponse{Snapshots: names, NextPageToken: next}, nil
}

func (p *publisherService) DeleteTopic(ctx context.Context, req *pubsubpb.DeleteTopicRequest) (*emptypb.Empty, error) {
	if _, _, err := parseName(req.Topic, "topics"); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.topics[req.Topic] == nil {
		return nil, errTopicNotFound(req.Topic)
	}
	if err := e.record(&logRecord{Op: opTopicDel, Name: req.Topic}); err != nil {
		return nil, err
	}
	e.deleteTopicLocked(req.Topic)
	return &emptypb.Empty{}, nil
}

func (e *engine) deleteTopicLocked(name string) {
	t := e.topics[name]
	for _, s := range t.subs {
		s.topic = nil
		s.pb = clone(s.pb)
		s.pb.Topic = deletedTopic
	}
	for _, sn := range t.snaps {
		sn.pb = clone(sn.pb)
		sn.pb.Topic = deletedTopic
	}
	delete(e.topics, name)
}

func (p *publisherService) DetachSubscription(ctx context.Context, req *pubsubpb.DetachSubscriptionRequest) (*pubsubpb.DetachSubscriptionResponse, error) {
	if _, _, err := parseName(req.Subscription, "subscriptions"); err != nil {
		return nil, err
	}
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.subs[req.Subscription]
	if s == nil {
		return nil, errSubNotFound(req.Subscription)
	}
	if err := e.record(&logRecord{Op: opDetach, Name: req.Subscription}); err != nil {
		return nil, err
	}
	e.detachLocked(s)
	return &pubsubpb.DetachSubscriptionResponse{}, nil
}

// detachLocked stops delivery, drops the backlog and unlinks s from its
// topic; the subscription itself remains, with detached set.
func (e *engine) detachLocked(s *subscription) {
	s.pb = clone(s.pb)
	s.pb.Detached = true
	s.resetLocked()
	s.msgs.clear()
	for _, c := range s.cons {
		c.removed = true
		c.err = status.Errorf(codes.FailedPrecondition, "Subscription %s is detached from its topic.", s.pb.Name)
		c.wake()
	}
	s.cons = nil
	if s.pusher != nil {
		s.pusher.stop()
		s.pusher = nil
	}
	if s.topic != nil {
		delete(s.topic.subs, s.pb.Name)
	}
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

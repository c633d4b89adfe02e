package emulator

import (
	"errors"
	"io"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StreamingPull delivers messages as they become ready, in batches, while
// the stream's outstanding messages and bytes stay under the limits of the
// client's first request. Acks and deadline changes may come on the stream;
// in an exactly-once subscription each gets a confirmation.
func (p *subscriberService) StreamingPull(stream pubsubpb.Subscriber_StreamingPullServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.MaxOutstandingMessages < 0 || first.MaxOutstandingBytes < 0 {
		return status.Error(codes.InvalidArgument, "max_outstanding_messages and max_outstanding_bytes must not be negative.")
	}
	if first.StreamAckDeadlineSeconds != 0 && (first.StreamAckDeadlineSeconds < 10 || first.StreamAckDeadlineSeconds > 600) {
		return status.Errorf(codes.InvalidArgument, "Invalid stream_ack_deadline_seconds %d: it must be between 10 and 600.", first.StreamAckDeadlineSeconds)
	}
	if len(first.ModifyDeadlineSeconds) != len(first.ModifyDeadlineAckIds) {
		return status.Error(codes.InvalidArgument, "modify_deadline_seconds and modify_deadline_ack_ids must have the same length.")
	}
	e := p.e
	s, unlock, err := e.lockSub(first.Subscription)
	if err != nil {
		return err
	}
	if err := s.usable(); err != nil {
		unlock()
		return err
	}
	deadline := time.Duration(s.pb.AckDeadlineSeconds) * time.Second
	if first.StreamAckDeadlineSeconds > 0 {
		deadline = time.Duration(first.StreamAckDeadlineSeconds) * time.Second
	}
	c := &consumer{
		sub:      s,
		maxMsgs:  first.MaxOutstandingMessages,
		maxBytes: first.MaxOutstandingBytes,
		deadline: deadline,
		notify:   make(chan struct{}, 1),
	}
	p.handleStreamRequestLocked(s, c, first)
	s.addConsumerLocked(c)
	props := &pubsubpb.StreamingPullResponse_SubscriptionProperties{
		ExactlyOnceDeliveryEnabled: s.pb.EnableExactlyOnceDelivery,
		MessageOrderingEnabled:     s.pb.EnableMessageOrdering,
	}
	unlock()

	recvDone := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			if len(req.ModifyDeadlineSeconds) != len(req.ModifyDeadlineAckIds) {
				recvDone <- status.Error(codes.InvalidArgument, "modify_deadline_seconds and modify_deadline_ack_ids must have the same length.")
				return
			}
			e.mu.Lock()
			p.handleStreamRequestLocked(s, c, req)
			e.mu.Unlock()
		}
	}()
	defer func() {
		e.mu.Lock()
		s.removeConsumerLocked(c)
		e.mu.Unlock()
	}()

	max := e.cfg.MaxMessagesPerResponse
	for {
		select {
		case <-c.notify:
		case err := <-recvDone:
			if errors.Is(err, io.EOF) {
				return nil
			}
			if _, ok := status.FromError(err); ok {
				return err
			}
			return status.FromContextError(err).Err()
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
		e.mu.Lock()
		if c.err != nil {
			e.mu.Unlock()
			return c.err
		}
		msgs, confirms := c.pending, c.confirms
		c.pending, c.pendingSM, c.confirms = nil, nil, nil
		props.ExactlyOnceDeliveryEnabled = s.pb.EnableExactlyOnceDelivery
		e.mu.Unlock()
		for _, res := range confirms {
			if err := stream.Send(res); err != nil {
				return err
			}
		}
		for len(msgs) > 0 {
			n, size := 0, 0
			for n < len(msgs) && n < max && size < 8<<20 {
				size += len(msgs[n].Message.Data) + 200
				n++
			}
			if err := stream.Send(&pubsubpb.StreamingPullResponse{ReceivedMessages: msgs[:n], SubscriptionProperties: props}); err != nil {
				return err
			}
			msgs = msgs[n:]
		}
	}
}

func (p *subscriberService) handleStreamRequestLocked(s *subscription, c *consumer, req *pubsubpb.StreamingPullRequest) {
	if s.stopped {
		return
	}
	now := time.Now()
	if d := req.StreamAckDeadlineSeconds; d >= 10 && d <= 600 {
		c.deadline = time.Duration(d) * time.Second
	}
	eod := s.eod()
	s.touchLocked()
	if len(req.AckIds) > 0 {
		ok, invalid, err := s.ackIDsLocked(req.AckIds, now, true)
		if eod {
			conf := &pubsubpb.StreamingPullResponse_AcknowledgeConfirmation{AckIds: ok, InvalidAckIds: invalid}
			if err != nil {
				// Not acked: the data log refused. Clients retry these.
				conf = &pubsubpb.StreamingPullResponse_AcknowledgeConfirmation{TemporaryFailedAckIds: req.AckIds}
			}
			c.confirms = append(c.confirms, &pubsubpb.StreamingPullResponse{AcknowledgeConfirmation: conf})
			c.wake()
		}
		// Otherwise, when the data log refused, the messages come back once
		// their deadlines pass.
	}
	if len(req.ModifyDeadlineAckIds) > 0 {
		// Group by deadline, keeping each group's ack IDs.
		groups := map[int32][]string{}
		for i, id := range req.ModifyDeadlineAckIds {
			secs := req.ModifyDeadlineSeconds[i]
			if secs < 0 {
				secs = 0
			}
			if secs > 600 {
				secs = 600
			}
			groups[secs] = append(groups[secs], id)
		}
		var allOK, allInvalid []string
		for secs, ids := range groups {
			ok, invalid := s.modAckLocked(ids, secs, now, true)
			allOK = append(allOK, ok...)
			allInvalid = append(allInvalid, invalid...)
		}
		if eod {
			c.confirms = append(c.confirms, &pubsubpb.StreamingPullResponse{
				ModifyAckDeadlineConfirmation: &pubsubpb.StreamingPullResponse_ModifyAckDeadlineConfirmation{AckIds: allOK, InvalidAckIds: allInvalid},
			})
			c.wake()
		}
	}
}

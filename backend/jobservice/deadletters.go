package jobservice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/courierq/courier/jobs"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// DeadLetter is a message kept on a dead-letter subscription.
type DeadLetter struct {
	Subscription string // the dead-letter subscription it is on
	MessageID    string // its message ID there; with Subscription, its name
	Type         string // ce-type; "" when it had none (it cannot be replayed)
	JobID        string // ce-id; "" when it had none
	Reason       string
	Attempt      int // the attempt that failed; 0 when it never ran or is unknown
	Published    time.Time
	Data         []byte
	Labels       map[string]string // the job labels it carried
	Attributes   map[string]string // every attribute
}

// DeadLetters reads and removes dead letters (courier: an
// ingest.DeadLetterReader, which any replica with a Pub/Sub client has).
type DeadLetters interface {
	// Peek returns up to limit dead letters of each type (of typ, or all
	// when typ is ""), oldest first, leaving them in place.
	Peek(ctx context.Context, typ string, limit int) ([]DeadLetter, error)
	// Ack removes the dead letters with these message IDs from
	// subscription sub and returns the IDs it removed.
	Ack(ctx context.Context, sub string, messageIDs []string) ([]string, error)
}

// Dead-letter limits: ListDeadLetters' default and largest page_size (per
// type), and the most dead letters one ReplayDeadLetters names.
const (
	DefaultDeadLetterPage = 100
	MaxDeadLetterPage     = 1000
	MaxReplay             = 1000
)

// ReenqueueLabel is the label a replayed (or re-enqueued) job carries: the
// ID of the dead job it replays.
const ReenqueueLabel = "reenqueued-from"

// ReenqueueKey is the idempotency key of the re-enqueue of failed job id:
// "courier-reenqueue:ID", or with the ID's SHA-256 when that would pass
// jobs.MaxIdempotencyKeyBytes (IDs from other publishers may be long).
// ReplayDeadLetters and the dashboard's re-enqueue share it, so that a dead
// job is re-enqueued once however often, and from wherever, it is asked.
func ReenqueueKey(id string) string {
	const prefix = "courier-reenqueue:"
	if len(prefix)+len(id) <= jobs.MaxIdempotencyKeyBytes {
		return prefix + id
	}
	sum := sha256.Sum256([]byte(id))
	return prefix + "sha256:" + hex.EncodeToString(sum[:])
}

func (s *Service) deadLetters() (DeadLetters, error) {
	if s.cfg.DeadLetters == nil {
		return nil, status.Error(codes.FailedPrecondition, "jobservice: this server reads no dead letters (it has no Pub/Sub client or no job types); ask a courier replica that serves jobs")
	}
	return s.cfg.DeadLetters, nil
}

// checkType refuses a type that is not registered; "" passes.
func (s *Service) checkType(field, typ string) error {
	if typ == "" {
		return nil
	}
	if err := tooLong(field, typ, jobs.MaxTypeBytes); err != nil {
		return err
	}
	if _, ok := s.cfg.Types.Lookup(typ); !ok {
		return status.Errorf(codes.InvalidArgument, "jobservice: %s %q is not a registered job type; registered job types: %s", field, typ, s.typeList())
	}
	return nil
}

// ListDeadLetters implements courier.v1.JobService.
func (s *Service) ListDeadLetters(ctx context.Context, req *courierv1.ListDeadLettersRequest) (*courierv1.ListDeadLettersResponse, error) {
	if err := s.checkType("type", req.GetType()); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > MaxDeadLetterPage:
		return nil, status.Errorf(codes.InvalidArgument, "jobservice: page_size is %d: use 0 for %d, or 1 to %d", size, DefaultDeadLetterPage, MaxDeadLetterPage)
	case size == 0:
		size = DefaultDeadLetterPage
	}
	dl, err := s.deadLetters()
	if err != nil {
		return nil, err
	}
	letters, err := dl.Peek(ctx, req.GetType(), size)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "jobservice: reading dead letters: %v", err)
	}
	out := &courierv1.ListDeadLettersResponse{DeadLetters: make([]*courierv1.DeadLetter, len(letters))}
	for i, l := range letters {
		out.DeadLetters[i] = deadLetterProto(l)
	}
	return out, nil
}

func deadLetterProto(l DeadLetter) *courierv1.DeadLetter {
	p := &courierv1.DeadLetter{
		Subscription: l.Subscription, MessageId: l.MessageID, Type: l.Type, JobId: l.JobID, Reason: l.Reason,
		Attempt: int32(l.Attempt), PublishTime: ts(l.Published), Labels: l.Labels, Attributes: l.Attributes,
	}
	if l.Type != "" {
		p.Payload = &anypb.Any{TypeUrl: "type.googleapis.com/" + l.Type, Value: l.Data}
	}
	return p
}

// ReplayDeadLetters implements courier.v1.JobService: each dead letter is
// enqueued as EnqueueJob would (with ReenqueueKey of the dead job as its
// idempotency key, so a replay that is repeated, or done from the dashboard
// too, makes one job), then removed.
func (s *Service) ReplayDeadLetters(ctx context.Context, req *courierv1.ReplayDeadLettersRequest) (*courierv1.ReplayDeadLettersResponse, error) {
	refs, typ := req.GetDeadLetters(), req.GetType()
	switch {
	case len(refs) > 0 && typ != "":
		return nil, status.Error(codes.InvalidArgument, "jobservice: both dead_letters and type are set: name the dead letters, or a type to replay all of its dead letters, not both")
	case len(refs) == 0 && typ == "":
		return nil, status.Error(codes.InvalidArgument, "jobservice: dead_letters and type are both empty: name the dead letters to replay (from ListDeadLetters), or a type to replay all of its dead letters")
	case len(refs) > MaxReplay:
		return nil, status.Errorf(codes.InvalidArgument, "jobservice: dead_letters has %d entries, over the limit of %d: split the request", len(refs), MaxReplay)
	}
	for i, r := range refs {
		if r.GetSubscription() == "" || r.GetMessageId() == "" {
			return nil, status.Errorf(codes.InvalidArgument, "jobservice: dead_letters[%d]: subscription and message_id are both required (ListDeadLetters gives them)", i)
		}
	}
	if err := s.checkType("type", typ); err != nil {
		return nil, err
	}
	dl, err := s.deadLetters()
	if err != nil {
		return nil, err
	}
	letters, err := dl.Peek(ctx, typ, MaxDeadLetterPage)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "jobservice: reading dead letters: %v", err)
	}
	type ref struct{ sub, id string }
	byRef := make(map[ref]DeadLetter, len(letters))
	for _, l := range letters {
		byRef[ref{l.Subscription, l.MessageID}] = l
	}
	var todo []DeadLetter
	resp := &courierv1.ReplayDeadLettersResponse{}
	if typ != "" {
		for _, l := range letters {
			if l.Type == typ {
				todo = append(todo, l)
			}
		}
	} else {
		seen := map[ref]bool{}
		for _, r := range refs {
			k := ref{r.GetSubscription(), r.GetMessageId()}
			if seen[k] {
				continue
			}
			seen[k] = true
			l, ok := byRef[k]
			if !ok {
				resp.Results = append(resp.Results, &courierv1.DeadLetterReplay{Subscription: k.sub, MessageId: k.id,
					Error: &spb.Status{Code: int32(codes.NotFound), Message: fmt.Sprintf("jobservice: no dead letter %s on %s (replayed already, or being read by someone else: list again)", k.id, k.sub)}})
				continue
			}
			todo = append(todo, l)
		}
	}
	// Enqueue each, then remove those enqueued, one Ack per subscription.
	replayed := map[string][]*courierv1.DeadLetterReplay{}
	for _, l := range todo {
		r := &courierv1.DeadLetterReplay{Subscription: l.Subscription, MessageId: l.MessageID}
		resp.Results = append(resp.Results, r)
		id, err := s.replay(ctx, l)
		if err != nil {
			st := status.Convert(err)
			r.Error = &spb.Status{Code: int32(st.Code()), Message: st.Message()}
			continue
		}
		r.JobId = id
		replayed[l.Subscription] = append(replayed[l.Subscription], r)
	}
	for sub, rs := range replayed {
		ids := make([]string, len(rs))
		for i, r := range rs {
			ids[i] = r.MessageId
		}
		acked, err := dl.Ack(ctx, sub, ids)
		done := map[string]bool{}
		for _, id := range acked {
			done[id] = true
		}
		for _, r := range rs {
			if done[r.MessageId] {
				continue
			}
			msg := fmt.Sprintf("jobservice: replayed as job %s, but the dead letter was not found to remove (someone is reading it); replay it again: that makes no second job", r.JobId)
			if err != nil {
				msg = fmt.Sprintf("jobservice: replayed as job %s, but removing the dead letter failed (%v); replay it again: that makes no second job", r.JobId, err)
			}
			r.Error = &spb.Status{Code: int32(codes.Unavailable), Message: msg}
		}
	}
	return resp, nil
}

// replay enqueues dead letter l as a new job and returns its ID.
func (s *Service) replay(ctx context.Context, l DeadLetter) (string, error) {
	if l.Type == "" {
		return "", status.Error(codes.FailedPrecondition, "jobservice: the dead letter has no ce-type, so there is no job type to enqueue it as; inspect it with Pub/Sub tools")
	}
	dead := l.JobID
	if dead == "" {
		dead = "dead-letter-" + l.MessageID
	}
	labels := maps.Clone(l.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ReenqueueLabel] = dead
	resp, err := s.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{
		Payload:        &anypb.Any{TypeUrl: "type.googleapis.com/" + l.Type, Value: l.Data},
		IdempotencyKey: ReenqueueKey(dead),
		Labels:         labels,
	})
	if err != nil {
		return "", err
	}
	return resp.GetJobId(), nil
}

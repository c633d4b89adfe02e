// Package jobservice implements courier.v1.JobService, the enqueue-and-poll
// API: EnqueueJob validates the payload and records the job with its outbox
// entry in one store transaction (the outbox relay publishes it),
// EnqueueJobs does so for up to 1,000 jobs in one transaction (on a store
// that is a jobs.BatchEnqueuer), and GetJob, WatchJob, CancelJob, CountJobs and
// ListJobs read and change the job store. ListDeadLetters and
// ReplayDeadLetters read and replay dead letters through Config.DeadLetters
// (courier gives it a reader of the dead-letter subscriptions), a replay
// being an EnqueueJob.
// The job controls (schedules, paused job types: controls.go) use the
// store's optional interfaces, given in Config, and answer
// FailedPrecondition without them.
//
// It is the gRPC face of the job store and nothing more: it does not publish
// to Pub/Sub (the relay does), run handlers (ingest does), or know how a job
// type is handled beyond the Types it is given.
package jobservice

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/internal/clip"
	"github.com/courierq/courier/jobs"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	"github.com/courierq/courier/publisher"
)

// MaxPayloadBytes is Pub/Sub's limit on a message's data: 10 MB. The
// message that carries a job also holds attributes, so EnqueueJob checks its
// encoded size too (publisher.CheckSize).
const MaxPayloadBytes = 10 * 1000 * 1000

// MaxPageTokenBytes bounds ListJobs' page_token: longer than any token a
// store returns (a job ID of jobs.MaxIDBytes and a time, base64-encoded).
const MaxPageTokenBytes = 1024

// TypeInfo is what the service needs to know of a registered job type.
type TypeInfo struct {
	// MaxAttempts recorded on new jobs, and the most a job may ask for
	// (EnqueueJobRequest.max_attempts). 0 leaves it to the handler, and
	// bounds nothing.
	MaxAttempts int
	// Timeout is the type's timeout of an attempt, and the longest a job
	// may ask for (EnqueueJobRequest.timeout); 0 means none, and bounds
	// nothing.
	Timeout time.Duration
	// Check, when set, is called before a job of this type is recorded; an
	// error is returned to the caller as is (it should be a status error,
	// e.g. FailedPrecondition or ResourceExhausted) and nothing is recorded.
	Check func(ctx context.Context) error
}

// Types says which job types can be enqueued. Lookup gets the full protobuf
// name of a payload type.
type Types interface {
	Lookup(typeName string) (TypeInfo, bool)
}

// TypeMap is a Types backed by a map.
type TypeMap map[string]TypeInfo

// Lookup implements Types.
func (m TypeMap) Lookup(name string) (TypeInfo, bool) { t, ok := m[name]; return t, ok }

// Config configures the service.
type Config struct {
	// Store records jobs. Required.
	Store jobs.Store
	// Types are the job types that may be enqueued. Required.
	Types Types
	// Resolver finds payload message types by name. Nil means
	// protoregistry.GlobalTypes.
	Resolver interface {
		FindMessageByName(protoreflect.FullName) (protoreflect.MessageType, error)
	}
	// Auth is the service's authorization policy. The zero value denies
	// everyone outside dev mode.
	Auth backend.Policy
	// Notify, when set, is called after each successful enqueue of a new job
	// (the outbox relay uses it to publish at once instead of at its next
	// poll).
	Notify func()
	// NewID makes job IDs. Nil means UUIDv7 (time-ordered).
	NewID func() string
	// MaxPayloadBytes bounds a payload. 0 means MaxPayloadBytes (Pub/Sub's
	// limit); larger values are refused by New.
	MaxPayloadBytes int
	// EndedCache is how many ended jobs (SUCCEEDED, FAILED, CANCELLED: they
	// do not change again) GetJob answers from memory, so that callers
	// polling for results do not each cost a store read. 0 means 50,000; a
	// negative number turns the cache off. A cached job is answered for at
	// most a minute after the janitor deleted it.
	EndedCache int
	// Now is the clock of the cache and of new schedules' first ticks. nil
	// means time.Now.
	Now func() time.Time
	// DeadLetters, when set, serves ListDeadLetters and ReplayDeadLetters;
	// nil makes them answer FailedPrecondition.
	DeadLetters DeadLetters

	// Schedules, when set, keeps the schedules of CreateSchedule and the
	// others (the job store, when it implements jobs.Schedules); nil makes
	// them answer FailedPrecondition. ScheduleCreated, when set, is called
	// after a create or resume (the scheduler looks at once).
	Schedules       jobs.Schedules
	ScheduleCreated func()
	// TypePauser, when set, keeps the paused job types of PauseJobType and
	// the others; nil makes them answer FailedPrecondition. TypesChanged,
	// when set, is called after a pause or resume, before the RPC answers
	// (this replica's workers take it in at once; others within their poll).
	TypePauser   jobs.TypePauser
	TypesChanged func(context.Context)
}

// Service implements courier.v1.JobService.
type Service struct {
	courierv1.UnimplementedJobServiceServer
	cfg Config

	stopOnce sync.Once
	stopping chan struct{} // closed by StopWatches
	ended    *ended        // nil when off
}

var _ backend.Service = (*Service)(nil)

// New validates cfg and returns the service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("jobservice: Config.Store is nil; pass the job store")
	}
	if cfg.Types == nil {
		return nil, errors.New("jobservice: Config.Types is nil; pass the registered job types")
	}
	if cfg.Resolver == nil {
		cfg.Resolver = protoregistry.GlobalTypes
	}
	if cfg.NewID == nil {
		cfg.NewID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}
	switch {
	case cfg.MaxPayloadBytes == 0:
		cfg.MaxPayloadBytes = MaxPayloadBytes
	case cfg.MaxPayloadBytes < 0 || cfg.MaxPayloadBytes > MaxPayloadBytes:
		return nil, fmt.Errorf("jobservice: Config.MaxPayloadBytes is %d; it must be between 1 and Pub/Sub's limit of %d", cfg.MaxPayloadBytes, MaxPayloadBytes)
	}
	if cfg.EndedCache == 0 {
		cfg.EndedCache = 50_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, stopping: make(chan struct{}), ended: newEnded(cfg.EndedCache, time.Minute, cfg.Now)}, nil
}

// StopWatches ends every open WatchJob stream, and any opened later, at once
// with Unavailable, so that a server shutting down can drain: watches are
// long-lived by design and would otherwise hold the shutdown until its
// deadline. Clients call WatchJob again (on another replica, or on this one
// once it is back); the first message they get is the job's current state.
func (s *Service) StopWatches() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// errShuttingDown is what StopWatches ends a watch with.
var errShuttingDown = status.Error(codes.Unavailable, "jobservice: the server is shutting down; call WatchJob again (on another replica, or here once it is back): the first message is the job's current state")

// Desc implements backend.Service.
func (s *Service) Desc() *grpc.ServiceDesc { return &courierv1.JobService_ServiceDesc }

// Register implements backend.Service.
func (s *Service) Register(r grpc.ServiceRegistrar) { courierv1.RegisterJobServiceServer(r, s) }

// Policy implements backend.Service.
func (s *Service) Policy() backend.Policy { return s.cfg.Auth }

// EnqueueJob implements courier.v1.JobService.
func (s *Service) EnqueueJob(ctx context.Context, req *courierv1.EnqueueJobRequest) (*courierv1.EnqueueJobResponse, error) {
	p, info, err := s.prepare(req)
	if err != nil {
		return nil, err
	}
	if info.Check != nil {
		if err := info.Check(ctx); err != nil {
			return nil, err
		}
	}
	stored, dup, err := s.cfg.Store.Enqueue(ctx, p)
	if err != nil {
		return nil, toStatus(err, p.Job.ID)
	}
	if !dup && s.cfg.Notify != nil {
		s.cfg.Notify()
	}
	return &courierv1.EnqueueJobResponse{JobId: stored.ID, Duplicate: dup}, nil
}

// MaxEnqueueJobs bounds the jobs of one EnqueueJobs.
const MaxEnqueueJobs = jobs.MaxEnqueueBatch

// EnqueueJobs implements courier.v1.JobService: every job checked as
// EnqueueJob checks it, then all recorded in one store transaction.
func (s *Service) EnqueueJobs(ctx context.Context, req *courierv1.EnqueueJobsRequest) (*courierv1.EnqueueJobsResponse, error) {
	switch n := len(req.GetJobs()); {
	case n == 0:
		return nil, status.Errorf(codes.InvalidArgument, "jobservice: jobs is empty: pass 1 to %d jobs", MaxEnqueueJobs)
	case n > MaxEnqueueJobs:
		return nil, status.Errorf(codes.InvalidArgument, "jobservice: jobs has %d entries, over the limit of %d: split the batch", n, MaxEnqueueJobs)
	}
	ps := make([]jobs.EnqueueParams, len(req.GetJobs()))
	checked := map[string]bool{}
	for i, r := range req.GetJobs() {
		p, info, err := s.prepare(r)
		if err != nil {
			return nil, atIndex(i, err)
		}
		if info.Check != nil && !checked[p.Job.Type] {
			if err := info.Check(ctx); err != nil {
				return nil, atIndex(i, err)
			}
			checked[p.Job.Type] = true
		}
		ps[i] = p
	}
	res, err := jobs.EnqueueBatch(ctx, s.cfg.Store, ps)
	if errors.Is(err, jobs.ErrUnsupported) {
		return nil, status.Errorf(codes.Unimplemented, "jobservice: EnqueueJobs: this server's job store cannot record a batch in one transaction (%v); call EnqueueJob for each job, or run on the SQLite or PostgreSQL store", err)
	}
	if err != nil {
		return nil, toStatus(err, "")
	}
	out := &courierv1.EnqueueJobsResponse{Jobs: make([]*courierv1.EnqueueJobResponse, len(res))}
	added := false
	for i, r := range res {
		out.Jobs[i] = &courierv1.EnqueueJobResponse{JobId: r.Job.ID, Duplicate: r.Duplicate}
		added = added || !r.Duplicate
	}
	if added && s.cfg.Notify != nil {
		s.cfg.Notify()
	}
	return out, nil
}

// atIndex restates a status error about one job of EnqueueJobs with its
// index.
func atIndex(i int, err error) error {
	st := status.Convert(err)
	return status.Errorf(st.Code(), "jobservice: jobs[%d]: %s", i, strings.TrimPrefix(st.Message(), "jobservice: "))
}

// prepare checks an EnqueueJobRequest and returns what to record, and its
// type's TypeInfo (whose Check the caller runs).
func (s *Service) prepare(req *courierv1.EnqueueJobRequest) (jobs.EnqueueParams, TypeInfo, error) {
	var none TypeInfo
	if err := tooLong("idempotency_key", req.GetIdempotencyKey(), jobs.MaxIdempotencyKeyBytes); err != nil {
		return jobs.EnqueueParams{}, none, err
	}
	if err := tooLong("ordering_key", req.GetOrderingKey(), jobs.MaxOrderingKeyBytes); err != nil {
		return jobs.EnqueueParams{}, none, err
	}
	payload := req.GetPayload()
	typeName, info, err := s.checkPayload("payload", payload, req.GetLabels())
	if err != nil {
		return jobs.EnqueueParams{}, none, err
	}
	job := jobs.Job{
		ID:             s.cfg.NewID(),
		Type:           typeName,
		MaxAttempts:    info.MaxAttempts,
		Payload:        payload.GetValue(),
		Labels:         req.GetLabels(),
		IdempotencyKey: req.GetIdempotencyKey(),
		OrderingKey:    req.GetOrderingKey(),
	}
	if req.GetRunAfter() != nil {
		if err := req.GetRunAfter().CheckValid(); err != nil {
			return jobs.EnqueueParams{}, none, status.Errorf(codes.InvalidArgument, "jobservice: run_after: %v", err)
		}
		job.RunAfter = req.GetRunAfter().AsTime()
	}
	switch n := int(req.GetMaxAttempts()); {
	case n < 0:
		return jobs.EnqueueParams{}, none, status.Errorf(codes.InvalidArgument, "jobservice: max_attempts is %d: use 0 for the type's (%s) or 1 up to it", n, limitText(info.MaxAttempts))
	case n > 0 && info.MaxAttempts > 0 && n > info.MaxAttempts:
		return jobs.EnqueueParams{}, none, status.Errorf(codes.InvalidArgument, "jobservice: max_attempts is %d, above the limit of %d (the max attempts of %s): ask for at most that, or raise the type's (handlers.types.%s.maxAttempts)", n, info.MaxAttempts, typeName, typeName)
	case n > 0:
		job.MaxAttempts = n
	}
	if d := req.GetTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return jobs.EnqueueParams{}, none, status.Errorf(codes.InvalidArgument, "jobservice: timeout: %v", err)
		}
		to := d.AsDuration()
		switch {
		case to <= 0:
			return jobs.EnqueueParams{}, none, status.Errorf(codes.InvalidArgument, "jobservice: timeout is %v: use a positive duration, or leave it unset for the type's", to)
		case to < time.Microsecond:
			return jobs.EnqueueParams{}, none, status.Errorf(codes.InvalidArgument, "jobservice: timeout is %v: use at least 1µs", to)
		case info.Timeout > 0 && to > info.Timeout:
			return jobs.EnqueueParams{}, none, status.Errorf(codes.InvalidArgument, "jobservice: timeout is %v, above the limit of %v (the timeout of %s): ask for at most that, or raise the type's (handlers.types.%s.timeout)", to, info.Timeout, typeName, typeName)
		}
		job.Timeout = to
	}
	p := jobs.EnqueueParams{Job: job, UniqueWhileActive: req.GetUniqueWhileActive()}
	if d := req.GetUniqueFor(); d != nil {
		if err := d.CheckValid(); err != nil {
			return jobs.EnqueueParams{}, none, status.Errorf(codes.InvalidArgument, "jobservice: unique_for: %v", err)
		}
		if p.UniqueFor = d.AsDuration(); p.UniqueFor <= 0 {
			return jobs.EnqueueParams{}, none, status.Errorf(codes.InvalidArgument, "jobservice: unique_for is %v: use a positive duration, or leave it unset to hold the key while the job is kept", p.UniqueFor)
		}
	}
	if (p.UniqueFor > 0 || p.UniqueWhileActive) && job.IdempotencyKey == "" {
		return jobs.EnqueueParams{}, none, status.Error(codes.InvalidArgument, "jobservice: unique_for or unique_while_active is set but idempotency_key is empty: they say how long a key is held, so set one")
	}
	if p.UniqueFor > 0 || p.UniqueWhileActive {
		if !jobs.SupportsUniqueScopes(s.cfg.Store) {
			return jobs.EnqueueParams{}, none, status.Errorf(codes.Unimplemented, "jobservice: this server's job store (%T) does not support unique_for or unique_while_active; leave them unset (the key is then held while the job is kept), or run on the SQLite or PostgreSQL store", s.cfg.Store)
		}
	}
	return p, info, nil
}

// checkPayload checks a job payload and its labels (an EnqueueJob's, a
// schedule's) and returns its type name and TypeInfo; field names the
// payload in errors.
func (s *Service) checkPayload(field string, payload *anypb.Any, labels map[string]string) (string, TypeInfo, error) {
	var none TypeInfo
	if payload == nil || payload.GetTypeUrl() == "" {
		return "", none, status.Errorf(codes.InvalidArgument, "jobservice: %s is missing: set it to a google.protobuf.Any holding a registered job message, e.g. courier.demo.v1.Echo", field)
	}
	typeName := string(payload.MessageName())
	if typeName == "" {
		return "", none, status.Errorf(codes.InvalidArgument, "jobservice: %s type URL %q names no message; it should end in /FULL.MESSAGE.NAME", field, clip.String(payload.GetTypeUrl()))
	}
	if err := tooLong(field+" type name", typeName, jobs.MaxTypeBytes); err != nil {
		return "", none, err
	}
	if err := checkLabels("labels", labels); err != nil {
		return "", none, err
	}
	mt, err := s.cfg.Resolver.FindMessageByName(protoreflect.FullName(typeName))
	if err != nil {
		return "", none, status.Errorf(codes.InvalidArgument, "jobservice: %s type %s is unknown to this server: no such protobuf message is compiled in; registered job types: %s", field, typeName, s.typeList())
	}
	info, ok := s.cfg.Types.Lookup(typeName)
	if !ok {
		return "", none, status.Errorf(codes.InvalidArgument, "jobservice: %s type %s has no registered handler, so no job of it can run; registered job types: %s", field, typeName, s.typeList())
	}
	if n := len(payload.GetValue()); n > s.cfg.MaxPayloadBytes {
		return "", none, status.Errorf(codes.InvalidArgument, "jobservice: %s of %s is %d bytes, over the limit of %d bytes (Pub/Sub's message limit); store large inputs elsewhere and pass a reference", field, typeName, n, s.cfg.MaxPayloadBytes)
	}
	// The relay publishes the payload with courier's attributes and the
	// labels: what must fit is that message, as the publisher counts it.
	var tl *publisher.TooLargeError
	if err := publisher.CheckSize(typeName, payload.GetValue(), labels); errors.As(err, &tl) {
		return "", none, status.Errorf(codes.InvalidArgument, "jobservice: a job of %s with this %s (%d bytes) and these labels is a Pub/Sub message of %d bytes encoded, over Pub/Sub's limit of %d bytes; store large inputs elsewhere and pass a reference", typeName, field, len(payload.GetValue()), tl.Size, tl.Limit)
	}
	if err := proto.Unmarshal(payload.GetValue(), mt.New().Interface()); err != nil {
		return "", none, status.Errorf(codes.InvalidArgument, "jobservice: %s bytes are not a valid %s: %v", field, typeName, err)
	}
	return typeName, info, nil
}

func limitText(n int) string {
	if n == 0 {
		return "the handler's default"
	}
	return strconv.Itoa(n)
}

// GetJob implements courier.v1.JobService.
func (s *Service) GetJob(ctx context.Context, req *courierv1.GetJobRequest) (*courierv1.Job, error) {
	if err := requireID(req.GetId()); err != nil {
		return nil, err
	}
	if j := s.ended.get(req.GetId()); j != nil {
		return j, nil
	}
	j, err := s.cfg.Store.Get(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err, req.GetId())
	}
	pj := ToProto(j)
	s.ended.put(pj)
	return pj, nil
}

// WatchJob implements courier.v1.JobService: the current state, then each
// change, until a terminal state. It waits on the store's change
// notifications, so watchers do not poll the database.
func (s *Service) WatchJob(req *courierv1.WatchJobRequest, stream grpc.ServerStreamingServer[courierv1.Job]) error {
	if err := requireID(req.GetId()); err != nil {
		return err
	}
	ctx := stream.Context()
	select {
	case <-s.stopping:
		return errShuttingDown
	default:
	}
	changed, cancel := s.cfg.Store.Subscribe(req.GetId())
	defer cancel()
	var last time.Time
	var lastState jobs.State
	var lastProgress float64
	var lastMsg string
	first := true
	for {
		j, err := s.cfg.Store.Get(ctx, req.GetId())
		if err != nil {
			return toStatus(err, req.GetId())
		}
		if first || !j.UpdateTime.Equal(last) || j.State != lastState || j.ProgressFraction != lastProgress || j.ProgressMessage != lastMsg {
			if err := stream.Send(ToProto(j)); err != nil {
				return err
			}
			first, last, lastState, lastProgress, lastMsg = false, j.UpdateTime, j.State, j.ProgressFraction, j.ProgressMessage
		}
		if j.State.Terminal() {
			return nil
		}
		select {
		case <-changed:
		case <-s.stopping:
			return errShuttingDown
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// CancelJob implements courier.v1.JobService.
func (s *Service) CancelJob(ctx context.Context, req *courierv1.CancelJobRequest) (*courierv1.Job, error) {
	if err := requireID(req.GetId()); err != nil {
		return nil, err
	}
	j, err := s.cfg.Store.Cancel(ctx, req.GetId())
	if err != nil {
		if errors.Is(err, jobs.ErrConflict) && j != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "jobservice: job %s has already ended (%s), so it cannot be cancelled", j.ID, j.State)
		}
		return nil, toStatus(err, req.GetId())
	}
	return ToProto(j), nil
}

// CountJobs implements courier.v1.JobService: the store's counters by type
// and state (Store.Counts), so its cost does not grow with the jobs kept.
func (s *Service) CountJobs(ctx context.Context, req *courierv1.CountJobsRequest) (*courierv1.CountJobsResponse, error) {
	if err := tooLong("type", req.GetType(), jobs.MaxTypeBytes); err != nil {
		return nil, err
	}
	counts, err := s.cfg.Store.Counts(ctx)
	if err != nil {
		return nil, toStatus(err, "")
	}
	resp := &courierv1.CountJobsResponse{}
	for _, c := range counts {
		if req.GetType() != "" && c.Type != req.GetType() {
			continue
		}
		tc := &courierv1.JobTypeCounts{
			Type:      c.Type,
			Queued:    int64(c.States[jobs.Queued]),
			Running:   int64(c.States[jobs.Running]),
			Succeeded: int64(c.States[jobs.Succeeded]),
			Failed:    int64(c.States[jobs.Failed]),
			Cancelled: int64(c.States[jobs.Cancelled]),
		}
		if !c.OldestQueued.IsZero() {
			tc.OldestQueuedTime = timestamppb.New(c.OldestQueued)
		}
		resp.Types = append(resp.Types, tc)
	}
	slices.SortFunc(resp.Types, func(a, b *courierv1.JobTypeCounts) int { return strings.Compare(a.Type, b.Type) })
	return resp, nil
}

// ListJobs implements courier.v1.JobService.
func (s *Service) ListJobs(ctx context.Context, req *courierv1.ListJobsRequest) (*courierv1.ListJobsResponse, error) {
	p := jobs.ListParams{Type: req.GetType(), Labels: req.GetLabels(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()}
	if err := tooLong("type", p.Type, jobs.MaxTypeBytes); err != nil {
		return nil, err
	}
	if err := checkLabels("label filters", p.Labels); err != nil {
		return nil, err
	}
	if err := tooLong("page_token", p.PageToken, MaxPageTokenBytes); err != nil {
		return nil, err
	}
	if p.PageSize < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "jobservice: page_size is %d; it must be 0 (default 50) or positive", p.PageSize)
	}
	if req.GetState() != courierv1.State_STATE_UNSPECIFIED {
		st, ok := stateFromProto[req.GetState()]
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "jobservice: state %v is not a job state", req.GetState())
		}
		p.State = st
	}
	list, next, err := s.cfg.Store.List(ctx, p)
	if err != nil {
		return nil, toStatus(err, "")
	}
	resp := &courierv1.ListJobsResponse{NextPageToken: next}
	for _, j := range list {
		resp.Jobs = append(resp.Jobs, ToProto(j))
	}
	return resp, nil
}

func (s *Service) typeList() string {
	if m, ok := s.cfg.Types.(TypeMap); ok {
		if len(m) == 0 {
			return "(none)"
		}
		return strings.Join(slices.Sorted(maps.Keys(m)), ", ")
	}
	return "see the server's configuration"
}

func requireID(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "jobservice: id is empty; pass the job_id that EnqueueJob returned")
	}
	return tooLong("id", id, jobs.MaxIDBytes)
}

// tooLong returns InvalidArgument when value is over limit bytes, naming
// the field, its size and the limit, and quoting only the value's start.
func tooLong(field, value string, limit int) error {
	if len(value) <= limit {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "jobservice: %s is %d bytes, over the limit of %d bytes (it starts %q)", field, len(value), limit, clip.String(value))
}

// checkLabels bounds a job's labels or a List's label filters (what) by the
// limits every store shares: jobs.MaxLabels pairs, keys of 1 to
// jobs.MaxLabelKeyBytes bytes, values of at most jobs.MaxLabelValueBytes.
func checkLabels(what string, labels map[string]string) error {
	if len(labels) > jobs.MaxLabels {
		return status.Errorf(codes.InvalidArgument, "jobservice: %d %s, over the limit of %d", len(labels), what, jobs.MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		switch v := labels[k]; {
		case k == "":
			return status.Errorf(codes.InvalidArgument, "jobservice: %s: a key is empty; keys are 1 to %d bytes", what, jobs.MaxLabelKeyBytes)
		case len(k) > jobs.MaxLabelKeyBytes:
			return status.Errorf(codes.InvalidArgument, "jobservice: %s: key %q is %d bytes, over the limit of %d bytes", what, clip.String(k), len(k), jobs.MaxLabelKeyBytes)
		case len(v) > jobs.MaxLabelValueBytes:
			return status.Errorf(codes.InvalidArgument, "jobservice: %s: the value of %q is %d bytes, over the limit of %d bytes (it starts %q)", what, k, len(v), jobs.MaxLabelValueBytes, clip.String(v))
		}
	}
	return nil
}

// toStatus maps store errors to gRPC status errors: the one place this is
// decided.
func toStatus(err error, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jobs.ErrNotFound):
		return status.Errorf(codes.NotFound, "jobservice: no job has id %q; job IDs come from EnqueueJob, and finished jobs are deleted after the retention period", id)
	case errors.Is(err, jobs.ErrConflict):
		return status.Errorf(codes.FailedPrecondition, "jobservice: job %s: %v", id, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, jobs.ErrClosed):
		return status.Error(codes.Unavailable, "jobservice: the job store is closed (server shutting down); retry against another replica")
	case errors.Is(err, jobs.ErrInvalidArgument):
		return status.Errorf(codes.InvalidArgument, "jobservice: %v", err)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	st := status.New(codes.Unavailable, fmt.Sprintf("jobservice: the job store failed: %v; retry later", err))
	if d, e := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}); e == nil {
		st = d
	}
	return st.Err()
}

var stateToProto = map[jobs.State]courierv1.State{
	jobs.Queued:    courierv1.State_QUEUED,
	jobs.Running:   courierv1.State_RUNNING,
	jobs.Succeeded: courierv1.State_SUCCEEDED,
	jobs.Failed:    courierv1.State_FAILED,
	jobs.Cancelled: courierv1.State_CANCELLED,
}

var stateFromProto = func() map[courierv1.State]jobs.State {
	m := map[courierv1.State]jobs.State{}
	for k, v := range stateToProto {
		m[v] = k
	}
	return m
}()

// StateToProto maps a store state to the API's.
func StateToProto(s jobs.State) courierv1.State { return stateToProto[s] }

// StateFromProto maps an API state to the store's ("" for an invalid one).
func StateFromProto(s courierv1.State) jobs.State { return stateFromProto[s] }

// ToProto converts a stored job to the API's Job.
func ToProto(j *jobs.Job) *courierv1.Job {
	out := &courierv1.Job{
		Id:             j.ID,
		Type:           j.Type,
		State:          stateToProto[j.State],
		Attempt:        int32(j.Attempt),
		MaxAttempts:    int32(j.MaxAttempts),
		Payload:        &anypb.Any{TypeUrl: "type.googleapis.com/" + j.Type, Value: j.Payload},
		Labels:         j.Labels,
		CreateTime:     ts(j.CreateTime),
		StartTime:      ts(j.StartTime),
		EndTime:        ts(j.EndTime),
		UpdateTime:     ts(j.UpdateTime),
		RunAfter:       ts(j.RunAfter),
		IdempotencyKey: j.IdempotencyKey,
		OrderingKey:    j.OrderingKey,
	}
	if j.Timeout > 0 {
		out.Timeout = durationpb.New(j.Timeout)
	}
	if j.ResultType != "" {
		out.Result = &anypb.Any{TypeUrl: "type.googleapis.com/" + j.ResultType, Value: j.Result}
	}
	// A retried job that then succeeded keeps its last error in the store;
	// the API shows errors only while they matter.
	if (j.ErrorCode != 0 || j.ErrorMessage != "") && j.State != jobs.Succeeded {
		out.Error = &spb.Status{Code: j.ErrorCode, Message: j.ErrorMessage}
	}
	if j.ProgressFraction != 0 || j.ProgressMessage != "" {
		out.Progress = &courierv1.Progress{Fraction: j.ProgressFraction, Message: j.ProgressMessage}
	}
	return out
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

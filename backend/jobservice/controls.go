package jobservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/internal/clip"
	"github.com/courierq/courier/jobs"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	"github.com/courierq/courier/schedule"
)

// The job controls: schedules (Config.Schedules) and paused job types
// (Config.TypePauser). Without them the RPCs answer FailedPrecondition.

var errNoSchedules = status.Error(codes.FailedPrecondition, "jobservice: this server's job store keeps no schedules (it does not implement jobs.Schedules); use the sqlite or postgres store")

var errNoPauser = status.Error(codes.FailedPrecondition, "jobservice: this server's job store keeps no paused job types (it does not implement jobs.TypePauser); use the sqlite or postgres store")

// CreateSchedule implements courier.v1.JobService.
func (s *Service) CreateSchedule(ctx context.Context, req *courierv1.CreateScheduleRequest) (*courierv1.Schedule, error) {
	if s.cfg.Schedules == nil {
		return nil, errNoSchedules
	}
	in := req.GetSchedule()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "jobservice: schedule is missing: set it, with name, payload and cron or every")
	}
	sc, err := s.ScheduleFromProto(in)
	if err != nil {
		return nil, err
	}
	// What EnqueueJob would refuse for the type (e.g. a workflow type
	// without Temporal) is refused now, not at each tick.
	if info, _ := s.cfg.Types.Lookup(sc.Type); info.Check != nil {
		if err := info.Check(ctx); err != nil {
			return nil, err
		}
	}
	out, err := s.cfg.Schedules.CreateSchedule(ctx, sc)
	if err != nil {
		return nil, scheduleStatus(err, sc.Name)
	}
	if s.cfg.ScheduleCreated != nil {
		s.cfg.ScheduleCreated()
	}
	return ScheduleToProto(out), nil
}

// ScheduleFromProto checks a schedule given to the API (errors are
// InvalidArgument naming the field under "schedule.") and returns it for the
// store, its first tick after now.
func (s *Service) ScheduleFromProto(in *courierv1.Schedule) (jobs.Schedule, error) {
	var sc jobs.Schedule
	name := in.GetName()
	switch {
	case name == "":
		return sc, status.Error(codes.InvalidArgument, "jobservice: schedule.name is empty: name the schedule, e.g. nightly-report")
	case len(name) > jobs.MaxScheduleNameBytes:
		return sc, status.Errorf(codes.InvalidArgument, "jobservice: schedule.name is %d bytes, over the limit of %d bytes (it starts %q)", len(name), jobs.MaxScheduleNameBytes, clip.String(name))
	}
	if in.GetMaxAttempts() < 0 {
		return sc, status.Errorf(codes.InvalidArgument, "jobservice: schedule.max_attempts is %d: use 0 for the handler's default or a positive count", in.GetMaxAttempts())
	}
	var every time.Duration
	if e := in.GetEvery(); e != nil {
		if err := e.CheckValid(); err != nil {
			return sc, status.Errorf(codes.InvalidArgument, "jobservice: schedule.every: %v", err)
		}
		if every = e.AsDuration(); every <= 0 {
			return sc, status.Errorf(codes.InvalidArgument, "jobservice: schedule.every is %v: use a positive duration of at least %v", every, schedule.MinEvery)
		}
	}
	spec, err := schedule.Parse(in.GetCron(), in.GetTimeZone(), every)
	var se *schedule.Error
	if errors.As(err, &se) {
		field := map[string]string{"cron": "schedule.cron", "timeZone": "schedule.time_zone", "every": "schedule.every"}[se.Field]
		return sc, status.Errorf(codes.InvalidArgument, "jobservice: %s: %v: %s", field, clip.String(fmt.Sprint(se.Value)), se.Fix)
	}
	if err != nil {
		return sc, status.Errorf(codes.InvalidArgument, "jobservice: schedule: %v", err)
	}
	typeName, _, err := s.checkPayload("schedule.payload", in.GetPayload(), in.GetLabels())
	if err != nil {
		return sc, err
	}
	missed := jobs.MissedSkip
	switch in.GetMissed() {
	case courierv1.MissedTicks_MISSED_TICKS_UNSPECIFIED, courierv1.MissedTicks_MISSED_TICKS_SKIP:
	case courierv1.MissedTicks_MISSED_TICKS_CATCH_UP:
		missed = jobs.MissedCatchUp
	default:
		return sc, status.Errorf(codes.InvalidArgument, "jobservice: schedule.missed is %v: use MISSED_TICKS_SKIP or MISSED_TICKS_CATCH_UP", in.GetMissed())
	}
	next := spec.Next(s.cfg.Now())
	if next.IsZero() {
		return sc, status.Errorf(codes.InvalidArgument, "jobservice: schedule.cron %q has no tick in the next five years", clip.String(in.GetCron()))
	}
	return jobs.Schedule{
		Name: name, Type: typeName, Payload: in.GetPayload().GetValue(), Labels: in.GetLabels(), MaxAttempts: int(in.GetMaxAttempts()),
		Cron: in.GetCron(), TimeZone: in.GetTimeZone(), Every: every, Missed: missed, NextTime: next,
	}, nil
}

// ListSchedules implements courier.v1.JobService.
func (s *Service) ListSchedules(ctx context.Context, _ *courierv1.ListSchedulesRequest) (*courierv1.ListSchedulesResponse, error) {
	if s.cfg.Schedules == nil {
		return nil, errNoSchedules
	}
	list, err := s.cfg.Schedules.ListSchedules(ctx)
	if err != nil {
		return nil, scheduleStatus(err, "")
	}
	resp := &courierv1.ListSchedulesResponse{}
	for _, sc := range list {
		resp.Schedules = append(resp.Schedules, ScheduleToProto(sc))
	}
	return resp, nil
}

// PauseSchedule implements courier.v1.JobService.
func (s *Service) PauseSchedule(ctx context.Context, req *courierv1.PauseScheduleRequest) (*courierv1.Schedule, error) {
	if s.cfg.Schedules == nil {
		return nil, errNoSchedules
	}
	if err := requireName(req.GetName()); err != nil {
		return nil, err
	}
	sc, err := s.cfg.Schedules.PauseSchedule(ctx, req.GetName(), true, time.Time{})
	if err != nil {
		return nil, scheduleStatus(err, req.GetName())
	}
	return ScheduleToProto(sc), nil
}

// ResumeSchedule implements courier.v1.JobService: the schedule goes on
// from its first tick after now.
func (s *Service) ResumeSchedule(ctx context.Context, req *courierv1.ResumeScheduleRequest) (*courierv1.Schedule, error) {
	if s.cfg.Schedules == nil {
		return nil, errNoSchedules
	}
	if err := requireName(req.GetName()); err != nil {
		return nil, err
	}
	cur, err := s.cfg.Schedules.GetSchedule(ctx, req.GetName())
	if err != nil {
		return nil, scheduleStatus(err, req.GetName())
	}
	next := time.Time{}
	if cur.Paused {
		spec, err := schedule.Parse(cur.Cron, cur.TimeZone, cur.Every)
		if err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "jobservice: schedule %s has a spec this server cannot parse (%v); delete it and create it again", cur.Name, err)
		}
		next = spec.Next(s.cfg.Now())
	}
	sc, err := s.cfg.Schedules.PauseSchedule(ctx, req.GetName(), false, next)
	if err != nil {
		return nil, scheduleStatus(err, req.GetName())
	}
	if s.cfg.ScheduleCreated != nil {
		s.cfg.ScheduleCreated()
	}
	return ScheduleToProto(sc), nil
}

// DeleteSchedule implements courier.v1.JobService.
func (s *Service) DeleteSchedule(ctx context.Context, req *courierv1.DeleteScheduleRequest) (*courierv1.DeleteScheduleResponse, error) {
	if s.cfg.Schedules == nil {
		return nil, errNoSchedules
	}
	if err := requireName(req.GetName()); err != nil {
		return nil, err
	}
	if err := s.cfg.Schedules.DeleteSchedule(ctx, req.GetName()); err != nil {
		return nil, scheduleStatus(err, req.GetName())
	}
	return &courierv1.DeleteScheduleResponse{}, nil
}

func requireName(name string) error {
	if name == "" {
		return status.Error(codes.InvalidArgument, "jobservice: name is empty; pass the schedule's name (ListSchedules lists them)")
	}
	return tooLong("name", name, jobs.MaxScheduleNameBytes)
}

// scheduleStatus maps store errors about schedule name to status errors.
func scheduleStatus(err error, name string) error {
	switch {
	case errors.Is(err, jobs.ErrExists):
		return status.Errorf(codes.AlreadyExists, "jobservice: a schedule named %q exists; pick another name, or delete it first", clip.String(name))
	case errors.Is(err, jobs.ErrNotFound):
		return status.Errorf(codes.NotFound, "jobservice: no schedule is named %q; ListSchedules lists them", clip.String(name))
	}
	return toStatus(err, "")
}

// ScheduleToProto converts a stored schedule to the API's.
func ScheduleToProto(sc *jobs.Schedule) *courierv1.Schedule {
	out := &courierv1.Schedule{
		Name:        sc.Name,
		Payload:     &anypb.Any{TypeUrl: "type.googleapis.com/" + sc.Type, Value: sc.Payload},
		Labels:      sc.Labels,
		MaxAttempts: int32(sc.MaxAttempts),
		Cron:        sc.Cron,
		TimeZone:    sc.TimeZone,
		Missed:      courierv1.MissedTicks_MISSED_TICKS_SKIP,
		Paused:      sc.Paused,
		FromConfig:  sc.FromConfig,
		NextTime:    ts(sc.NextTime),
		LastTime:    ts(sc.LastTime),
		LastJobId:   sc.LastJobID,
		CreateTime:  ts(sc.CreateTime),
		UpdateTime:  ts(sc.UpdateTime),
	}
	if sc.Every > 0 {
		out.Every = durationpb.New(sc.Every)
	}
	if sc.Missed == jobs.MissedCatchUp {
		out.Missed = courierv1.MissedTicks_MISSED_TICKS_CATCH_UP
	}
	return out
}

// PauseJobType implements courier.v1.JobService.
func (s *Service) PauseJobType(ctx context.Context, req *courierv1.PauseJobTypeRequest) (*courierv1.PausedJobType, error) {
	if s.cfg.TypePauser == nil {
		return nil, errNoPauser
	}
	if err := s.requireType(req.GetType()); err != nil {
		return nil, err
	}
	p, err := s.cfg.TypePauser.PauseType(ctx, req.GetType())
	if err != nil {
		return nil, toStatus(err, "")
	}
	if s.cfg.TypesChanged != nil {
		s.cfg.TypesChanged(ctx)
	}
	return &courierv1.PausedJobType{Type: p.Type, PauseTime: ts(p.Since)}, nil
}

// ResumeJobType implements courier.v1.JobService.
func (s *Service) ResumeJobType(ctx context.Context, req *courierv1.ResumeJobTypeRequest) (*courierv1.ResumeJobTypeResponse, error) {
	if s.cfg.TypePauser == nil {
		return nil, errNoPauser
	}
	if req.GetType() == "" {
		return nil, status.Error(codes.InvalidArgument, "jobservice: type is empty; pass the full protobuf name of a paused type (ListPausedJobTypes lists them)")
	}
	if err := tooLong("type", req.GetType(), jobs.MaxTypeBytes); err != nil {
		return nil, err
	}
	resumed, err := s.cfg.TypePauser.ResumeType(ctx, req.GetType())
	if err != nil {
		return nil, toStatus(err, "")
	}
	if s.cfg.TypesChanged != nil {
		s.cfg.TypesChanged(ctx)
	}
	return &courierv1.ResumeJobTypeResponse{Resumed: resumed}, nil
}

// ListPausedJobTypes implements courier.v1.JobService.
func (s *Service) ListPausedJobTypes(ctx context.Context, _ *courierv1.ListPausedJobTypesRequest) (*courierv1.ListPausedJobTypesResponse, error) {
	if s.cfg.TypePauser == nil {
		return nil, errNoPauser
	}
	list, err := s.cfg.TypePauser.PausedTypes(ctx)
	if err != nil {
		return nil, toStatus(err, "")
	}
	resp := &courierv1.ListPausedJobTypesResponse{}
	for _, p := range list {
		resp.Types = append(resp.Types, &courierv1.PausedJobType{Type: p.Type, PauseTime: ts(p.Since)})
	}
	return resp, nil
}

// requireType refuses a type that is empty or not registered.
func (s *Service) requireType(typ string) error {
	if typ == "" {
		return status.Error(codes.InvalidArgument, "jobservice: type is empty; pass the full protobuf name of a job type, e.g. courier.demo.v1.Echo")
	}
	if err := tooLong("type", typ, jobs.MaxTypeBytes); err != nil {
		return err
	}
	if _, ok := s.cfg.Types.Lookup(typ); !ok {
		return status.Errorf(codes.InvalidArgument, "jobservice: type %s is not a registered job type; registered job types: %s", clip.String(typ), s.typeList())
	}
	return nil
}

package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// ScheduleOptions say when a schedule ticks (exactly one of Cron and
// Every) and what its jobs carry.
type ScheduleOptions struct {
	// Cron is a cron expression (five fields, six with seconds first, or
	// @hourly, @daily, ...) in TimeZone (an IANA name; "" means UTC).
	Cron, TimeZone string
	// Every is a fixed interval, at least 1s.
	Every time.Duration
	// CatchUp runs the ticks missed while courier was down; false skips
	// them.
	CatchUp     bool
	Labels      map[string]string
	MaxAttempts int32
}

// CreateSchedule records a schedule named name that enqueues a job of msg
// (its full protobuf name picks the job type) at each tick, once across
// all replicas.
func (j *Jobs) CreateSchedule(ctx context.Context, name string, msg proto.Message, o ScheduleOptions) (*courierv1.Schedule, error) {
	payload, err := anypb.New(msg)
	if err != nil {
		return nil, fmt.Errorf("client: encoding the payload: %w", err)
	}
	s := &courierv1.Schedule{Name: name, Payload: payload, Cron: o.Cron, TimeZone: o.TimeZone, Labels: o.Labels, MaxAttempts: o.MaxAttempts}
	if o.Every != 0 {
		s.Every = durationpb.New(o.Every)
	}
	if o.CatchUp {
		s.Missed = courierv1.MissedTicks_MISSED_TICKS_CATCH_UP
	}
	return j.c.CreateSchedule(ctx, &courierv1.CreateScheduleRequest{Schedule: s})
}

// Schedules lists the schedules, by name.
func (j *Jobs) Schedules(ctx context.Context) ([]*courierv1.Schedule, error) {
	resp, err := j.c.ListSchedules(ctx, &courierv1.ListSchedulesRequest{})
	return resp.GetSchedules(), err
}

// PauseSchedule stops a schedule's ticks until ResumeSchedule.
func (j *Jobs) PauseSchedule(ctx context.Context, name string) (*courierv1.Schedule, error) {
	return j.c.PauseSchedule(ctx, &courierv1.PauseScheduleRequest{Name: name})
}

// ResumeSchedule resumes a schedule from its next tick after now.
func (j *Jobs) ResumeSchedule(ctx context.Context, name string) (*courierv1.Schedule, error) {
	return j.c.ResumeSchedule(ctx, &courierv1.ResumeScheduleRequest{Name: name})
}

// DeleteSchedule deletes a schedule (its jobs stay).
func (j *Jobs) DeleteSchedule(ctx context.Context, name string) error {
	_, err := j.c.DeleteSchedule(ctx, &courierv1.DeleteScheduleRequest{Name: name})
	return err
}

// PauseType stops every worker of the fleet pulling jobs of typ (a full
// protobuf name); its queued jobs wait.
func (j *Jobs) PauseType(ctx context.Context, typ string) error {
	_, err := j.c.PauseJobType(ctx, &courierv1.PauseJobTypeRequest{Type: typ})
	return err
}

// ResumeType lets workers pull jobs of typ again; resumed is false when it
// was not paused.
func (j *Jobs) ResumeType(ctx context.Context, typ string) (resumed bool, err error) {
	resp, err := j.c.ResumeJobType(ctx, &courierv1.ResumeJobTypeRequest{Type: typ})
	return resp.GetResumed(), err
}

// PausedTypes lists the paused job types.
func (j *Jobs) PausedTypes(ctx context.Context) ([]*courierv1.PausedJobType, error) {
	resp, err := j.c.ListPausedJobTypes(ctx, &courierv1.ListPausedJobTypesRequest{})
	return resp.GetTypes(), err
}

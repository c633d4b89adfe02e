package storekit

import (
	"time"

	"github.com/courierq/courier/jobs"
)

// MaxCronBytes and MaxTimeZoneBytes bound a schedule's spec.
const MaxCronBytes, MaxTimeZoneBytes = 256, 64

// NewSchedule checks a schedule given to CreateSchedule or PutSchedule and
// returns the copy to store, with the fields the store owns reset. The
// store does not parse Cron (the scheduler does): it checks what it keeps.
func NewSchedule(pkg, method string, s jobs.Schedule) (jobs.Schedule, error) {
	if err := CheckName(pkg, method, s.Name); err != nil {
		return s, err
	}
	n := Clip(s.Name)
	if s.Type == "" {
		return s, Invalid(pkg, "%s: schedule %s: Schedule.Type is empty: set it to the full protobuf name of the payload", method, n)
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"Type", s.Type, jobs.MaxTypeBytes}, {"Cron", s.Cron, MaxCronBytes}, {"TimeZone", s.TimeZone, MaxTimeZoneBytes}} {
		if err := CheckText(pkg, method, "Schedule."+f.name, f.v, f.max); err != nil {
			return s, err
		}
	}
	if err := CheckLabels(pkg, method, "Schedule.Labels", s.Labels); err != nil {
		return s, err
	}
	if s.MaxAttempts < 0 {
		return s, Invalid(pkg, "%s: schedule %s: Schedule.MaxAttempts is %d: use 0 for the handler's default or a positive count", method, n, s.MaxAttempts)
	}
	if (s.Cron == "") == (s.Every <= 0) {
		return s, Invalid(pkg, "%s: schedule %s: set exactly one of Schedule.Cron and a positive Schedule.Every (Cron %q, Every %v)", method, n, Clip(s.Cron), s.Every)
	}
	if s.Missed == "" {
		s.Missed = jobs.MissedSkip
	}
	if !s.Missed.Valid() {
		return s, Invalid(pkg, "%s: schedule %s: Schedule.Missed is %q: use %q or %q", method, n, Clip(string(s.Missed)), jobs.MissedSkip, jobs.MissedCatchUp)
	}
	if s.NextTime.IsZero() {
		return s, Invalid(pkg, "%s: schedule %s: Schedule.NextTime is zero: set the first tick", method, n)
	}
	return jobs.Schedule{
		Name: s.Name, Type: s.Type, Payload: nilIfEmpty(s.Payload), Labels: copyLabels(s.Labels), MaxAttempts: s.MaxAttempts,
		Cron: s.Cron, TimeZone: s.TimeZone, Every: s.Every.Truncate(time.Microsecond), Missed: s.Missed,
		Paused: s.Paused, NextTime: Round(s.NextTime),
	}, nil
}

// CheckName checks a schedule's name: 1..jobs.MaxScheduleNameBytes bytes
// of text.
func CheckName(pkg, method, name string) error {
	if name == "" {
		return Invalid(pkg, "%s: the schedule name is empty: pass a name such as nightly-report", method)
	}
	return CheckText(pkg, method, "the schedule name", name, jobs.MaxScheduleNameBytes)
}

// CheckFire checks the arguments of FireSchedule and returns the job to
// enqueue (checked like Enqueue's) when there is one.
func CheckFire(pkg string, p jobs.FireParams) (jobs.FireParams, error) {
	if err := CheckName(pkg, "FireSchedule", p.Name); err != nil {
		return p, err
	}
	if p.Tick.IsZero() || !p.Next.After(p.Tick) {
		return p, Invalid(pkg, "FireSchedule: schedule %s: Next (%v) must be after Tick (%v)", Clip(p.Name), p.Next, p.Tick)
	}
	p.Tick, p.Next = Round(p.Tick), Round(p.Next)
	if p.Job.Type == "" {
		return p, nil
	}
	j, err := NewJob(pkg, "FireSchedule", p.Job, false)
	p.Job = j
	return p, err
}

// CheckType checks a job type name given to PauseType or ResumeType.
func CheckType(pkg, method, typ string) error {
	if typ == "" {
		return Invalid(pkg, "%s: the job type is empty: pass the full protobuf name, e.g. courier.demo.v1.Echo", method)
	}
	return CheckText(pkg, method, "the job type", typ, jobs.MaxTypeBytes)
}

// CheckSnooze checks the arguments of Snooze.
func CheckSnooze(pkg string, p jobs.SnoozeParams) error {
	if err := CheckID(pkg, "Snooze", p.ID); err != nil {
		return err
	}
	if err := checkLease(pkg, "Snooze", p.ID, p.Lease, true); err != nil {
		return err
	}
	if p.Until.IsZero() {
		return Invalid(pkg, "Snooze: job %s: Until is zero: pass when the job should run again", Clip(p.ID))
	}
	return nil
}

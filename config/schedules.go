package config

import (
	"encoding/json"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/schedule"
)

// Schedule is a periodic job defined by the config (schedules.NAME): at
// each tick of Cron (in TimeZone) or of Every, one job of Type with Payload
// is enqueued, once across all replicas. Each start puts the config's
// schedules in the store (a changed cron, time zone or interval starts
// from its next tick; a schedule paused through the API stays paused). A
// schedule removed from the config stays in the store until it is deleted
// (courier schedules delete NAME).
type Schedule struct {
	// Type is the job type: the full protobuf name of the payload, e.g.
	// courier.demo.v1.Echo. Required; a handler of it must be registered.
	Type string `json:"type"`
	// Payload is the job's payload as protojson of Type (a YAML or JSON
	// object). Empty means the type's empty message.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Labels of each job.
	Labels map[string]string `json:"labels,omitempty"`
	// MaxAttempts of each job; 0 means the handler's.
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// Cron is a cron expression: five fields (minute hour day-of-month month
	// day-of-week), six with seconds first, or @hourly, @daily, @weekly,
	// @monthly. Set exactly one of cron and every.
	Cron string `json:"cron,omitempty"`
	// TimeZone is the IANA zone of Cron, e.g. Europe/Paris. "" means UTC.
	TimeZone string `json:"timeZone,omitempty"`
	// Every is a fixed interval, at least 1s; ticks fall on whole multiples
	// of it since the Unix epoch (every: 1h fires on the hour).
	Every Duration `json:"every,omitempty"`
	// Missed is what the schedule does with ticks missed while no replica
	// ran (or later than jobs.scheduleGrace): "skip" (the default: they
	// enqueue nothing) or "catchUp" (each enqueues its job, oldest first).
	Missed string `json:"missed,omitempty"`
}

// MissedPolicy returns the store's name of s.Missed.
func (s Schedule) MissedPolicy() jobs.Missed {
	if s.Missed == "catchUp" {
		return jobs.MissedCatchUp
	}
	return jobs.MissedSkip
}

// validate checks one schedule's settings; path names it in errors.
func (s Schedule) validate(path, name string) []error {
	var errs []error
	bad := func(field string, v any, fix string) {
		errs = append(errs, &ValidationError{Field: path + field, Value: v, Fix: fix})
	}
	if name == "" || len(name) > jobs.MaxScheduleNameBytes {
		bad("", name, "name the schedule with 1 to 200 bytes")
	}
	if s.Type == "" {
		bad(".type", `""`, "set the job type, the full protobuf name of the payload, e.g. courier.demo.v1.Echo")
	}
	if s.MaxAttempts < 0 {
		bad(".maxAttempts", s.MaxAttempts, "use 1 or more, or 0 for the handler's")
	}
	switch s.Missed {
	case "", "skip", "catchUp":
	default:
		bad(".missed", s.Missed, `use "skip" (the default) or "catchUp"`)
	}
	if s.Every < 0 {
		bad(".every", s.Every, "use a positive duration such as 1h")
	} else if _, err := schedule.Parse(s.Cron, s.TimeZone, s.Every.D()); err != nil {
		if se, ok := err.(*schedule.Error); ok {
			bad("."+se.Field, se.Value, se.Fix)
		} else {
			bad("", name, err.Error())
		}
	}
	return errs
}

// Defaults of the scheduler's settings.
const (
	DefaultSchedulePoll  = time.Second
	DefaultScheduleGrace = time.Minute
	DefaultTypePausePoll = 5 * time.Second
)

// Package schedule runs periodic jobs: it parses a schedule's spec (a cron
// expression in a time zone, or a fixed interval) and runs the Scheduler,
// the loop that enqueues one job per tick of each stored schedule.
//
// Every replica that runs a Scheduler reads the same schedules from the
// store; a tick is claimed in the store (jobs.Schedules.FireSchedule moves
// the schedule's NextTime conditionally, and enqueues the tick's job in the
// same transaction, its idempotency key naming the schedule and the tick),
// so each tick enqueues exactly one job however many replicas run. Ticks
// missed while no Scheduler ran follow the schedule's jobs.Missed policy.
//
// It is not a general cron library (robfig/cron parses the expressions),
// and it does not run jobs: the jobs it enqueues go through the outbox to
// Pub/Sub like any other.
package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// MinEvery is the shortest fixed interval.
const MinEvery = time.Second

var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Spec is a parsed schedule spec: when its ticks fall.
type Spec struct {
	cron  cron.Schedule
	every time.Duration
}

// Parse parses a spec: a cron expression (five fields, or six with seconds
// first, or a descriptor such as @daily) in timeZone (an IANA name; ""
// means UTC), or a fixed interval every (at least MinEvery; ticks fall on
// whole multiples of it since the Unix epoch, the same on every replica).
// Exactly one of expr and every is set. Errors name the field: "cron",
// "timeZone" or "every".
func Parse(expr, timeZone string, every time.Duration) (Spec, error) {
	switch {
	case expr == "" && every == 0:
		return Spec{}, &Error{Field: "cron", Value: `""`, Fix: "set a cron expression such as \"0 2 * * *\", or every (a duration such as 1h)"}
	case expr != "" && every != 0:
		return Spec{}, &Error{Field: "every", Value: every, Fix: "set either cron or every, not both"}
	case every != 0:
		if every < MinEvery {
			return Spec{}, &Error{Field: "every", Value: every, Fix: "use at least " + MinEvery.String()}
		}
		if timeZone != "" {
			return Spec{}, &Error{Field: "timeZone", Value: timeZone, Fix: "a time zone applies to cron expressions only; remove it"}
		}
		if every%time.Microsecond != 0 {
			return Spec{}, &Error{Field: "every", Value: every, Fix: "use whole microseconds"}
		}
		return Spec{every: every}, nil
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return Spec{}, &Error{Field: "cron", Value: expr, Fix: "set the zone in timeZone, not in the expression"}
	}
	if strings.HasPrefix(expr, "@every") {
		return Spec{}, &Error{Field: "cron", Value: expr, Fix: "use every (e.g. every: 1h) for a fixed interval"}
	}
	loc := time.UTC
	if timeZone != "" {
		var err error
		if loc, err = time.LoadLocation(timeZone); err != nil || timeZone == "Local" {
			return Spec{}, &Error{Field: "timeZone", Value: timeZone, Fix: "use an IANA time zone name such as Europe/Paris or America/New_York"}
		}
	}
	c, err := parser.Parse(expr)
	if err != nil {
		return Spec{}, &Error{Field: "cron", Value: expr, Fix: fmt.Sprintf("%v; use five fields (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\"), six with seconds first, or @hourly, @daily, @weekly, @monthly", err)}
	}
	if ss, ok := c.(*cron.SpecSchedule); ok {
		ss.Location = loc
	}
	return Spec{cron: c}, nil
}

// Next returns the first tick strictly after t; zero when there is none (a
// cron expression that matches no date, such as 30 February).
func (s Spec) Next(t time.Time) time.Time {
	if s.every > 0 {
		n := t.UnixNano()
		e := int64(s.every)
		k := n / e
		if n < 0 && n%e != 0 {
			k--
		}
		return time.Unix(0, (k+1)*e).UTC()
	}
	return s.cron.Next(t).UTC()
}

// Error is a bad spec: which field, its value and how to fix it.
type Error struct {
	Field string
	Value any
	Fix   string
}

func (e *Error) Error() string { return fmt.Sprintf("schedule: %s: %v: %s", e.Field, e.Value, e.Fix) }

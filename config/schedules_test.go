package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/config"
)

func TestSchedules(t *testing.T) {
	c, err := config.Parse([]byte(`
pubsub: {emulator: embedded}
schedules:
  nightly:
    type: courier.demo.v1.Echo
    payload: {message: hi}
    cron: "0 2 * * *"
    timeZone: Europe/Paris
  often:
    type: courier.demo.v1.Echo
    every: 90s
    missed: catchUp
`))
	if err != nil {
		t.Fatal(err)
	}
	d := c.WithDefaults()
	if n := d.Schedules["nightly"]; n.Missed != "skip" || string(n.Payload) != `{"message":"hi"}` || n.Cron != "0 2 * * *" {
		t.Fatalf("schedules.nightly = %+v", n)
	}
	if o := d.Schedules["often"]; o.Every.D() != 90*time.Second || o.MissedPolicy() != "catch_up" {
		t.Fatalf("schedules.often = %+v", o)
	}
	if d.Jobs.SchedulePoll.D() != time.Second || d.Jobs.ScheduleGrace.D() != time.Minute || d.Jobs.TypePausePoll.D() != 5*time.Second {
		t.Fatalf("scheduler defaults: %+v", d.Jobs)
	}
}

func TestSchedulesErrorsNameTheField(t *testing.T) {
	for body, field := range map[string]string{
		`{type: a.v1.B, cron: "61 * * * *"}`:                     "schedules.s.cron",
		`{type: a.v1.B, cron: "* * * * *", timeZone: Mars/Base}`: "schedules.s.timeZone",
		`{type: a.v1.B}`: "schedules.s.cron",
		`{type: a.v1.B, every: 1h, cron: "* * * * *"}`: "schedules.s.every",
		`{type: a.v1.B, every: 10ms}`:                  "schedules.s.every",
		`{type: a.v1.B, every: -1h}`:                   "schedules.s.every",
		`{cron: "* * * * *"}`:                          "schedules.s.type",
		`{type: a.v1.B, every: 1h, missed: never}`:     "schedules.s.missed",
	} {
		_, err := config.Parse([]byte("pubsub: {emulator: embedded}\nschedules:\n  s: " + body + "\n"))
		var ve *config.ValidationError
		if !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("schedule %s: err = %v; want a ValidationError of %s", body, err, field)
		} else if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}

func TestSchedulesFromEnv(t *testing.T) {
	var c config.Config
	unknown, err := c.ApplyEnv([]string{`COURIER_SCHEDULES={nightly: {type: a.v1.B, every: 1h, payload: {x: 1}}}`, "COURIER_JOBS_SCHEDULEGRACE=2m"})
	if err != nil || len(unknown) != 0 {
		t.Fatalf("ApplyEnv = %v, %v", unknown, err)
	}
	if s := c.Schedules["nightly"]; s.Type != "a.v1.B" || s.Every.D() != time.Hour || string(s.Payload) != `{"x":1}` || c.Jobs.ScheduleGrace.D() != 2*time.Minute {
		t.Fatalf("from the environment: %+v, grace %v", c.Schedules, c.Jobs.ScheduleGrace)
	}
}

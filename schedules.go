package courier

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/courierq/courier/config"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/schedule"
)

// buildSchedules puts the config's schedules in the store and, in roles
// with the API, makes the scheduler. The scheduler runs with the API (not
// the workers) because API replicas are the ones always up: workers may
// scale to zero (push mode on Cloud Run) and a tick must not wait for them.
// Every API replica runs one; the store makes each tick fire once.
func (p *parts) buildSchedules(ctx context.Context, checks map[string]func(context.Context) error) error {
	n, cfg := p.n, p.cfg
	ss, ok := p.raw.(jobs.Schedules)
	if !ok {
		if len(cfg.Schedules) > 0 {
			return &config.ValidationError{Field: "schedules", Value: fmt.Sprintf("%d schedules", len(cfg.Schedules)),
				Fix: fmt.Sprintf("the job store (%T) keeps no schedules (it does not implement jobs.Schedules); use store.driver sqlite or postgres, or remove them", p.raw)}
		}
		return nil
	}
	now := n.now()
	for _, name := range sortedKeys(cfg.Schedules) {
		sc, err := p.configSchedule(name, cfg.Schedules[name], checks)
		if err != nil {
			return err
		}
		sc.NextTime = mustSpec(sc).Next(now())
		if _, err := ss.PutSchedule(ctx, sc); err != nil {
			return fmt.Errorf("courier: schedules.%s: %w", name, err)
		}
	}
	if !n.api() {
		return nil
	}
	var err error
	p.scheduler, err = schedule.New(schedule.Config{Store: ss, Now: now, Poll: cfg.Jobs.SchedulePoll.D(), Grace: cfg.Jobs.ScheduleGrace.D(),
		Notify: p.relay.Notify, Logger: n.log, MaxAttempts: func(typ string) int {
			if e, ok := p.reg.Lookup(typ); ok {
				return e.Config.MaxAttempts
			}
			return 0
		}})
	return err
}

// mustSpec parses a schedule config.Validate (or configSchedule) checked.
func mustSpec(sc jobs.Schedule) schedule.Spec {
	spec, err := schedule.Parse(sc.Cron, sc.TimeZone, sc.Every)
	if err != nil {
		panic(err)
	}
	return spec
}

// configSchedule converts schedules.NAME: its type must have a handler (or
// be a known workflow type) and its payload must be protojson of it.
func (p *parts) configSchedule(name string, c config.Schedule, checks map[string]func(context.Context) error) (jobs.Schedule, error) {
	path := "schedules." + name
	if _, err := schedule.Parse(c.Cron, c.TimeZone, c.Every.D()); err != nil {
		return jobs.Schedule{}, &config.ValidationError{Field: path, Value: c.Cron, Fix: err.Error()}
	}
	if _, ok := p.reg.Lookup(c.Type); !ok {
		fix := "no handler of this type is registered (registered: " + fmt.Sprint(p.reg.Types()) + ")"
		if check := checks[c.Type]; check != nil {
			if err := check(context.Background()); err != nil {
				fix = "its jobs cannot run here: " + err.Error()
			}
		}
		return jobs.Schedule{}, &config.ValidationError{Field: path + ".type", Value: c.Type, Fix: fix}
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(c.Type))
	if err != nil {
		return jobs.Schedule{}, &config.ValidationError{Field: path + ".type", Value: c.Type, Fix: "no such protobuf message is compiled in"}
	}
	msg := mt.New().Interface()
	if len(c.Payload) > 0 {
		if err := protojson.Unmarshal(c.Payload, msg); err != nil {
			return jobs.Schedule{}, &config.ValidationError{Field: path + ".payload", Value: string(c.Payload), Fix: fmt.Sprintf("it is not protojson of %s: %v", c.Type, err)}
		}
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return jobs.Schedule{}, &config.ValidationError{Field: path + ".payload", Value: string(c.Payload), Fix: err.Error()}
	}
	return jobs.Schedule{Name: name, Type: c.Type, Payload: b, Labels: c.Labels, MaxAttempts: c.MaxAttempts,
		Cron: c.Cron, TimeZone: c.TimeZone, Every: c.Every.D(), Missed: c.MissedPolicy()}, nil
}

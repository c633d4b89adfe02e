-- Job controls: periodic schedules and paused job types. (Snooze needs no
-- table: a snoozed job waits as QUEUED with run_after and an outbox entry.)

-- A schedule enqueues one job of type at each tick. next_time is the next
-- tick to fire: FireSchedule moves it on conditionally, so that one replica
-- fires each tick.
CREATE TABLE schedules (
	name         text        PRIMARY KEY,
	type         text        NOT NULL,
	payload      bytea,
	labels       jsonb       NOT NULL DEFAULT '{}',
	max_attempts integer     NOT NULL DEFAULT 0,
	cron         text        NOT NULL DEFAULT '',
	time_zone    text        NOT NULL DEFAULT '',
	every_us     bigint      NOT NULL DEFAULT 0,
	missed       text        NOT NULL DEFAULT 'skip',
	paused       boolean     NOT NULL DEFAULT false,
	from_config  boolean     NOT NULL DEFAULT false,
	next_time    timestamptz NOT NULL,
	last_time    timestamptz,
	last_job_id  text        NOT NULL DEFAULT '',
	create_time  timestamptz NOT NULL,
	update_time  timestamptz NOT NULL
);

-- Job types whose workers stop pulling, fleet-wide.
CREATE TABLE paused_types (
	type  text        PRIMARY KEY,
	since timestamptz NOT NULL
);

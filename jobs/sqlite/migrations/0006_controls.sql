-- Job controls: periodic schedules and paused job types. (Snooze needs no
-- table: a snoozed job waits as QUEUED with run_after and an outbox entry.)

-- A schedule enqueues one job of type at each tick. next_time is the next
-- tick to fire: FireSchedule moves it on conditionally, so that one replica
-- fires each tick. Times are microseconds since the Unix epoch.
CREATE TABLE schedules (
	name         TEXT    PRIMARY KEY,
	type         TEXT    NOT NULL,
	payload      BLOB,
	labels       TEXT    NOT NULL DEFAULT '',
	max_attempts INTEGER NOT NULL DEFAULT 0,
	cron         TEXT    NOT NULL DEFAULT '',
	time_zone    TEXT    NOT NULL DEFAULT '',
	every_us     INTEGER NOT NULL DEFAULT 0,
	missed       TEXT    NOT NULL DEFAULT 'skip',
	paused       INTEGER NOT NULL DEFAULT 0,
	from_config  INTEGER NOT NULL DEFAULT 0,
	next_time    INTEGER NOT NULL,
	last_time    INTEGER,
	last_job_id  TEXT    NOT NULL DEFAULT '',
	create_time  INTEGER NOT NULL,
	update_time  INTEGER NOT NULL
) WITHOUT ROWID;

-- Job types whose workers stop pulling, fleet-wide.
CREATE TABLE paused_types (
	type  TEXT    PRIMARY KEY,
	since INTEGER NOT NULL
) WITHOUT ROWID;

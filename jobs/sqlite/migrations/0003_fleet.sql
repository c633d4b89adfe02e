-- Fleet semantics: trace context, ordering keys and per-job timeouts; run
-- leases; outbox claims and per-entry backoff; counters for Counts and
-- Throughput; what Rescue needs to find lost jobs.

-- The job's W3C trace context, Pub/Sub ordering key and timeout override
-- (microseconds; 0 = the handler's).
ALTER TABLE jobs ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN trace_state TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN ordering_key TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN timeout_us INTEGER NOT NULL DEFAULT 0;
-- The current run's lease: set while RUNNING, '' and NULL otherwise.
ALTER TABLE jobs ADD COLUMN lease TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN lease_expiry INTEGER;
-- The last sign of life of a QUEUED job: when it became QUEUED (enqueued,
-- retried, released) or a worker last said it holds a delivery (MarkSeen).
-- Rescue looks for QUEUED jobs with none for long. (Not update_time: that
-- changes with Progress, and an index on it would cost every Progress.)
ALTER TABLE jobs ADD COLUMN seen_time INTEGER;
UPDATE jobs SET seen_time = update_time WHERE state = 'QUEUED';
-- The state before the last change: each write returns it, so that the
-- writer knows which counters of job_counts the change moved.
ALTER TABLE jobs ADD COLUMN prev_state TEXT NOT NULL DEFAULT '';

-- Counts: the oldest QUEUED job of a type.
CREATE INDEX jobs_queued_type ON jobs (type, create_time) WHERE state = 'QUEUED';
-- Rescue: QUEUED jobs by last sign of life (seen_time, or run_after when
-- later; queries must use the same expression); RUNNING jobs (as many as
-- the fleet runs at once: Rescue reads their lease expiry from the table, so
-- that a Heartbeat changes no indexed column).
CREATE INDEX jobs_queued_activity ON jobs (max(coalesce(seen_time, 0), coalesce(run_after, 0))) WHERE state = 'QUEUED';
CREATE INDEX jobs_running ON jobs (create_time) WHERE state = 'RUNNING';

-- Outbox claims (claim_owner until claim_until), per-entry backoff
-- (attempts, last_error) and the job's ordering key, whose entries go out
-- in seq order.
ALTER TABLE outbox ADD COLUMN ordering_key TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN claim_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN claim_until INTEGER;
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
CREATE INDEX outbox_key ON outbox (ordering_key, seq) WHERE ordering_key <> '';

-- Jobs per type and state, moved by the writer once per batch in the
-- transaction of the changes.
CREATE TABLE job_counts (
	type  TEXT    NOT NULL,
	state TEXT    NOT NULL,
	n     INTEGER NOT NULL,
	PRIMARY KEY (type, state)
) WITHOUT ROWID;
INSERT INTO job_counts (type, state, n) SELECT type, state, count(*) FROM jobs GROUP BY type, state;

-- Jobs that ended per minute (microseconds of its start) and type.
CREATE TABLE job_throughput (
	minute    INTEGER NOT NULL,
	type      TEXT    NOT NULL,
	succeeded INTEGER NOT NULL DEFAULT 0,
	failed    INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (minute, type)
) WITHOUT ROWID;
INSERT INTO job_throughput (minute, type, succeeded, failed)
	SELECT end_time - end_time % 60000000, type, sum(state = 'SUCCEEDED'), sum(state = 'FAILED')
	FROM jobs WHERE state IN ('SUCCEEDED', 'FAILED') AND end_time IS NOT NULL
	GROUP BY 1, 2;

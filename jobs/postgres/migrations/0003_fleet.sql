-- Fleet semantics: trace context, ordering keys and per-job timeouts; run
-- leases; outbox claims and per-entry backoff; counters for Counts and
-- Throughput; what Rescue needs to find lost jobs.

-- The job's W3C trace context, Pub/Sub ordering key and timeout override
-- (microseconds; 0 = the handler's); the current run's lease (set while
-- RUNNING, '' and NULL otherwise); the last sign of life of a QUEUED job
-- (when it became QUEUED, or a worker last said it holds a delivery:
-- MarkSeen; not update_time, which Progress changes: an index on it would
-- make every Progress a non-HOT update); and the state before the last
-- change, which each write returns so that the writer knows which counters
-- of job_counts it moved.
ALTER TABLE jobs
	ADD COLUMN trace_parent text        NOT NULL DEFAULT '',
	ADD COLUMN trace_state  text        NOT NULL DEFAULT '',
	ADD COLUMN ordering_key text        NOT NULL DEFAULT '',
	ADD COLUMN timeout_us   bigint      NOT NULL DEFAULT 0,
	ADD COLUMN lease        text        NOT NULL DEFAULT '',
	ADD COLUMN lease_expiry timestamptz,
	ADD COLUMN seen_time    timestamptz,
	ADD COLUMN prev_state   text        NOT NULL DEFAULT '';
UPDATE jobs SET seen_time = update_time WHERE state = 'QUEUED';

-- Counts: the oldest QUEUED job of a type.
CREATE INDEX jobs_queued_type ON jobs (type, create_time) WHERE state = 'QUEUED';
-- Rescue: QUEUED jobs by last sign of life (seen_time, or run_after when
-- later; greatest ignores NULLs; queries must use the same expression);
-- RUNNING jobs (as many as the fleet runs at once: Rescue reads their lease
-- expiry from the table, so that a Heartbeat changes no indexed column and
-- stays a HOT update).
CREATE INDEX jobs_queued_activity ON jobs ((greatest(seen_time, run_after))) WHERE state = 'QUEUED';
CREATE INDEX jobs_running ON jobs (create_time) WHERE state = 'RUNNING';

-- Outbox claims (claim_owner until claim_until), per-entry backoff
-- (attempts, last_error) and the job's ordering key, whose entries go out
-- in seq order.
ALTER TABLE outbox
	ADD COLUMN ordering_key text        NOT NULL DEFAULT '',
	ADD COLUMN claim_owner  text        NOT NULL DEFAULT '',
	ADD COLUMN claim_until  timestamptz,
	ADD COLUMN attempts     integer     NOT NULL DEFAULT 0,
	ADD COLUMN last_error   text        NOT NULL DEFAULT '';
CREATE INDEX outbox_key ON outbox (ordering_key, seq) WHERE ordering_key <> '';

-- Jobs per type and state, moved by each write batch (one upsert per
-- counter, in the batch's transaction). Each writer adds to a shard row of
-- its own, so that concurrent batches (and replicas) do not queue on one
-- hot row; Counts sums the shards.
CREATE TABLE job_counts (
	type  text     NOT NULL,
	state text     NOT NULL,
	shard smallint NOT NULL,
	n     bigint   NOT NULL,
	PRIMARY KEY (type, state, shard)
);
INSERT INTO job_counts (type, state, shard, n) SELECT type, state, 0, count(*) FROM jobs GROUP BY type, state;

-- Jobs that ended per minute and type, sharded as job_counts.
CREATE TABLE job_throughput (
	minute    timestamptz NOT NULL,
	type      text        NOT NULL,
	shard     smallint    NOT NULL,
	succeeded bigint      NOT NULL DEFAULT 0,
	failed    bigint      NOT NULL DEFAULT 0,
	PRIMARY KEY (minute, type, shard)
);
INSERT INTO job_throughput (minute, type, shard, succeeded, failed)
	SELECT date_bin('1 minute', end_time, timestamptz 'epoch'), type, 0, count(*) FILTER (WHERE state = 'SUCCEEDED'), count(*) FILTER (WHERE state = 'FAILED')
	FROM jobs WHERE state IN ('SUCCEEDED', 'FAILED') AND end_time IS NOT NULL
	GROUP BY 1, 2;

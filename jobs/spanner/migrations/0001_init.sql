-- The whole schema of the Spanner job store (GoogleSQL dialect). Statements
-- are separated by ';' at the end of a line; lines starting with '--' are
-- comments. Every statement is idempotent (IF NOT EXISTS), so that a
-- migration taken over from a process that died half way applies cleanly.
--
-- Keys: every job row is keyed (shard, id), shard = FNV-1a(id) mod 64
-- (computed by the store). Courier's IDs are UUIDv7, which grow with time:
-- keyed by id alone, every insert would land at the end of one split. With
-- the shard first they land at 64 places, which Spanner splits apart. The
-- secondary indexes on time-like columns start with the shard for the same
-- reason. Timestamps are kept to the microsecond; NULL means "not set".
CREATE TABLE IF NOT EXISTS jobs (
	shard             INT64 NOT NULL,
	id                STRING(MAX) NOT NULL,
	type              STRING(MAX) NOT NULL,
	state             STRING(16) NOT NULL,
	attempt           INT64 NOT NULL,
	max_attempts      INT64 NOT NULL,
	payload           BYTES(MAX),
	result_type       STRING(MAX) NOT NULL,
	result            BYTES(MAX),
	error_code        INT64 NOT NULL,
	error_message     STRING(MAX) NOT NULL,
	progress_fraction FLOAT64 NOT NULL,
	progress_message  STRING(MAX) NOT NULL,
	labels            STRING(MAX) NOT NULL,
	label_pairs       ARRAY<STRING(MAX)>,
	idempotency_key   STRING(MAX),
	run_after         TIMESTAMP,
	create_time       TIMESTAMP NOT NULL,
	start_time        TIMESTAMP,
	end_time          TIMESTAMP,
	update_time       TIMESTAMP NOT NULL,
	trace_parent      STRING(MAX) NOT NULL,
	trace_state       STRING(MAX) NOT NULL,
	ordering_key      STRING(MAX) NOT NULL,
	timeout_us        INT64 NOT NULL,
	lease             STRING(MAX) NOT NULL,
	lease_expiry      TIMESTAMP,
	seen_time         TIMESTAMP,
	queued_type       STRING(MAX),
	queued_activity   TIMESTAMP,
	events            INT64 NOT NULL,
	changed           TIMESTAMP OPTIONS (allow_commit_timestamp = true)
) PRIMARY KEY (shard, id);

-- Idempotency keys are unique per type; NULL (no key) is left out.
CREATE UNIQUE NULL_FILTERED INDEX IF NOT EXISTS jobs_idempotency ON jobs (type, idempotency_key);
-- List: newest first within each shard.
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (shard, create_time DESC, id DESC) STORING (type, state);
-- Counts (oldest Queued job of a type) and Rescue (Queued jobs by last sign
-- of life): queued_type and queued_activity are set only while QUEUED.
CREATE NULL_FILTERED INDEX IF NOT EXISTS jobs_queued ON jobs (queued_type, shard, create_time);
CREATE NULL_FILTERED INDEX IF NOT EXISTS jobs_queued_activity ON jobs (shard, queued_activity);
-- Rescue: Running jobs by lease expiry (set only while RUNNING).
CREATE NULL_FILTERED INDEX IF NOT EXISTS jobs_running ON jobs (shard, lease_expiry);
-- DeleteFinished: terminal jobs by end time.
CREATE NULL_FILTERED INDEX IF NOT EXISTS jobs_ended ON jobs (shard, end_time);

-- The timeline of each job, stored with it (interleaved) and deleted with it.
CREATE TABLE IF NOT EXISTS job_events (
	shard   INT64 NOT NULL,
	id      STRING(MAX) NOT NULL,
	seq     INT64 NOT NULL,
	time    TIMESTAMP NOT NULL,
	state   STRING(16) NOT NULL,
	attempt INT64 NOT NULL,
	message STRING(MAX) NOT NULL
) PRIMARY KEY (shard, id, seq), INTERLEAVE IN PARENT jobs ON DELETE CASCADE;

-- The outbox entry of a job, stored with it (interleaved): enqueue writes
-- both in one split. seq is the commit timestamp of the write that made the
-- entry (sub orders the entries one transaction makes): the enqueue order
-- of the entries of one ordering key, whose writes the store serializes.
CREATE TABLE IF NOT EXISTS outbox (
	shard        INT64 NOT NULL,
	id           STRING(MAX) NOT NULL,
	due          TIMESTAMP NOT NULL,
	created      TIMESTAMP NOT NULL,
	seq          TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
	sub          INT64 NOT NULL,
	ordering_key STRING(MAX),
	claim_owner  STRING(MAX) NOT NULL,
	claim_until  TIMESTAMP,
	attempts     INT64 NOT NULL,
	last_error   STRING(MAX) NOT NULL
) PRIMARY KEY (shard, id), INTERLEAVE IN PARENT jobs ON DELETE CASCADE;
CREATE NULL_FILTERED INDEX IF NOT EXISTS outbox_key ON outbox (ordering_key, seq, sub);

-- Jobs per type and state. Each transaction adds to one of 16 shard rows
-- chosen at random, so that writers do not queue on one hot row; Counts
-- sums the shards.
CREATE TABLE IF NOT EXISTS job_counts (
	type  STRING(MAX) NOT NULL,
	state STRING(16) NOT NULL,
	shard INT64 NOT NULL,
	n     INT64 NOT NULL
) PRIMARY KEY (type, state, shard);

-- Jobs that ended per minute and type, sharded as job_counts; the shard
-- comes first so that the current minute is not one hot key range.
CREATE TABLE IF NOT EXISTS job_throughput (
	shard     INT64 NOT NULL,
	minute    TIMESTAMP NOT NULL,
	type      STRING(MAX) NOT NULL,
	succeeded INT64 NOT NULL,
	failed    INT64 NOT NULL
) PRIMARY KEY (shard, minute, type);

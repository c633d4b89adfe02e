-- Jobs and the outbox, in the store's schema (the search_path). Times are
-- timestamptz with microsecond precision; NULL means "not set".
CREATE TABLE jobs (
	id                text             PRIMARY KEY,
	type              text             NOT NULL,
	state             text             NOT NULL,
	attempt           integer          NOT NULL DEFAULT 0,
	max_attempts      integer          NOT NULL DEFAULT 0,
	payload           bytea,
	result_type       text             NOT NULL DEFAULT '',
	result            bytea,
	error_code        integer          NOT NULL DEFAULT 0,
	error_message     text             NOT NULL DEFAULT '',
	progress_fraction double precision NOT NULL DEFAULT 0,
	progress_message  text             NOT NULL DEFAULT '',
	labels            jsonb            NOT NULL DEFAULT '{}',
	idempotency_key   text             NOT NULL DEFAULT '',
	run_after         timestamptz,
	create_time       timestamptz      NOT NULL,
	start_time        timestamptz,
	end_time          timestamptz,
	update_time       timestamptz      NOT NULL
) WITH (fillfactor = 70); -- room on each page for HOT updates (Start, Progress)
CREATE UNIQUE INDEX jobs_idempotency ON jobs (type, idempotency_key) WHERE idempotency_key <> '';
CREATE INDEX jobs_created ON jobs (create_time DESC, id DESC);
CREATE INDEX jobs_type_created ON jobs (type, create_time DESC, id DESC);
CREATE INDEX jobs_end ON jobs (end_time) WHERE end_time IS NOT NULL;
CREATE INDEX jobs_labels ON jobs USING gin (labels jsonb_path_ops);

CREATE TABLE outbox (
	seq     bigserial   NOT NULL,
	job_id  text        PRIMARY KEY,
	due     timestamptz NOT NULL,
	created timestamptz NOT NULL
);
CREATE INDEX outbox_due ON outbox (due, seq);

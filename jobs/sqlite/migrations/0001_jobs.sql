-- Jobs, their labels (for filtering) and the outbox. Times are microseconds
-- since the Unix epoch in UTC; NULL means "not set".
CREATE TABLE jobs (
	id                TEXT    PRIMARY KEY,
	type              TEXT    NOT NULL,
	state             TEXT    NOT NULL,
	attempt           INTEGER NOT NULL DEFAULT 0,
	max_attempts      INTEGER NOT NULL DEFAULT 0,
	payload           BLOB,
	result_type       TEXT    NOT NULL DEFAULT '',
	result            BLOB,
	error_code        INTEGER NOT NULL DEFAULT 0,
	error_message     TEXT    NOT NULL DEFAULT '',
	progress_fraction REAL    NOT NULL DEFAULT 0,
	progress_message  TEXT    NOT NULL DEFAULT '',
	labels            TEXT    NOT NULL DEFAULT '',
	idempotency_key   TEXT    NOT NULL DEFAULT '',
	run_after         INTEGER,
	create_time       INTEGER NOT NULL,
	start_time        INTEGER,
	end_time          INTEGER,
	update_time       INTEGER NOT NULL
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (type, idempotency_key) WHERE idempotency_key <> '';
CREATE INDEX jobs_created ON jobs (create_time DESC, id DESC);
CREATE INDEX jobs_type_created ON jobs (type, create_time DESC, id DESC);
CREATE INDEX jobs_end ON jobs (end_time) WHERE end_time IS NOT NULL;

CREATE TABLE job_labels (
	job_id TEXT NOT NULL,
	key    TEXT NOT NULL,
	value  TEXT NOT NULL,
	PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
CREATE INDEX job_labels_kv ON job_labels (key, value);

CREATE TABLE outbox (
	seq     INTEGER PRIMARY KEY,
	job_id  TEXT    NOT NULL UNIQUE,
	due     INTEGER NOT NULL,
	created INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (due, seq);

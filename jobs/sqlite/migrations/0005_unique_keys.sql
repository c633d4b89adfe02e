-- Idempotency keys and how long each is held (jobs.EnqueueParams.UniqueFor
-- and UniqueWhileActive): one row per type and key, naming the job that
-- holds it. held_until NULL: held while the job is kept; while_active 1:
-- only while the job is QUEUED or RUNNING. An enqueue with a key that is no
-- longer held records a new job, which takes the row over; so several jobs
-- may carry one key, and the unique index on jobs goes. DeleteFinished
-- deletes the rows of the jobs it deletes.
CREATE TABLE job_keys (
	type         TEXT    NOT NULL,
	key          TEXT    NOT NULL,
	job_id       TEXT    NOT NULL,
	held_until   INTEGER,
	while_active INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (type, key)
) WITHOUT ROWID;
CREATE INDEX job_keys_job ON job_keys (job_id);
INSERT INTO job_keys (type, key, job_id) SELECT type, idempotency_key, id FROM jobs WHERE idempotency_key <> '';
DROP INDEX jobs_idempotency;

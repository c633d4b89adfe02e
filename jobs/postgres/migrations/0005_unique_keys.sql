-- Idempotency keys and how long each is held (jobs.EnqueueParams.UniqueFor
-- and UniqueWhileActive): one row per type and key, naming the job that
-- holds it. held_until NULL: held while the job is kept; while_active true:
-- only while the job is QUEUED or RUNNING. An enqueue with a key that is no
-- longer held records a new job, which takes the row over; so several jobs
-- may carry one key, and the unique index on jobs goes. DeleteFinished
-- deletes the rows of the jobs it deletes.
CREATE TABLE job_keys (
	type         text        NOT NULL,
	key          text        NOT NULL,
	job_id       text        NOT NULL,
	held_until   timestamptz,
	while_active boolean     NOT NULL DEFAULT false,
	PRIMARY KEY (type, key)
);
CREATE INDEX job_keys_job ON job_keys (job_id);
INSERT INTO job_keys (type, key, job_id) SELECT type, idempotency_key, id FROM jobs WHERE idempotency_key <> '';
DROP INDEX jobs_idempotency;

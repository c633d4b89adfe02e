-- The timeline of each job: one row per change of state or attempt, written
-- by triggers in the statement that makes the change (so in the same
-- transaction and batch as it, and never forgotten by a write path).
-- Progress changes neither and records nothing; a redelivered Start of the
-- same attempt records nothing either. message is the error of a retry
-- (QUEUED again) or of a final failure, "" otherwise. DeleteFinished deletes
-- a job's events with it.
CREATE TABLE job_events (
	seq     INTEGER PRIMARY KEY,
	job_id  TEXT    NOT NULL,
	time    INTEGER NOT NULL,
	state   TEXT    NOT NULL,
	attempt INTEGER NOT NULL,
	message TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

CREATE TRIGGER job_events_insert AFTER INSERT ON jobs
BEGIN
	INSERT INTO job_events (job_id, time, state, attempt, message)
	VALUES (NEW.id, NEW.update_time, NEW.state, NEW.attempt, '');
END;

CREATE TRIGGER job_events_update AFTER UPDATE OF state, attempt ON jobs
WHEN NEW.state <> OLD.state OR NEW.attempt <> OLD.attempt
BEGIN
	INSERT INTO job_events (job_id, time, state, attempt, message)
	VALUES (NEW.id, NEW.update_time, NEW.state, NEW.attempt,
		CASE WHEN NEW.state IN ('QUEUED', 'FAILED') THEN NEW.error_message ELSE '' END);
END;

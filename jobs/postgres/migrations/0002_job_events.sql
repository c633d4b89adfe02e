-- The timeline of each job: one row per change of state or attempt, written
-- by triggers in the statement that makes the change (so in the same
-- transaction and batch as it, and never forgotten by a write path).
-- Progress changes neither and records nothing (the WHEN clause keeps the
-- trigger function from even being called); a redelivered Start of the same
-- attempt records nothing either. message is the error of a retry (QUEUED
-- again) or of a final failure, '' otherwise. DeleteFinished deletes a job's
-- events with it.
CREATE TABLE job_events (
	seq     bigserial   PRIMARY KEY,
	job_id  text        NOT NULL,
	time    timestamptz NOT NULL,
	state   text        NOT NULL,
	attempt integer     NOT NULL,
	message text        NOT NULL DEFAULT ''
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

CREATE FUNCTION job_events_record() RETURNS trigger LANGUAGE plpgsql
	SET search_path FROM CURRENT AS $$
BEGIN
	INSERT INTO job_events (job_id, time, state, attempt, message)
	VALUES (NEW.id, NEW.update_time, NEW.state, NEW.attempt,
		CASE WHEN TG_OP = 'UPDATE' AND NEW.state IN ('QUEUED', 'FAILED') THEN NEW.error_message ELSE '' END);
	RETURN NULL;
END;
$$;

CREATE TRIGGER job_events_insert AFTER INSERT ON jobs
	FOR EACH ROW EXECUTE FUNCTION job_events_record();
CREATE TRIGGER job_events_update AFTER UPDATE OF state, attempt ON jobs
	FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM OLD.state OR NEW.attempt IS DISTINCT FROM OLD.attempt)
	EXECUTE FUNCTION job_events_record();

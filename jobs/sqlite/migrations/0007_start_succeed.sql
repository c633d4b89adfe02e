-- A quick run's start and end in one write (jobs.StartSucceeder): the
-- UPDATE that moves a job from QUEUED straight to SUCCEEDED sets
-- attempt_start, and this trigger records the RUNNING event at that time
-- before job_events_update records SUCCEEDED. No other change moves a job
-- from QUEUED to SUCCEEDED.
ALTER TABLE jobs ADD COLUMN attempt_start INTEGER;

CREATE TRIGGER job_events_quick BEFORE UPDATE OF state ON jobs
WHEN OLD.state = 'QUEUED' AND NEW.state = 'SUCCEEDED'
BEGIN
	INSERT INTO job_events (job_id, time, state, attempt, message)
	VALUES (NEW.id, NEW.attempt_start, 'RUNNING', NEW.attempt, '');
END;

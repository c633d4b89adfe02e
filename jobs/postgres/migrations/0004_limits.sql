-- Fleet-wide limits (jobs.Limits): GCRA rate-limit buckets and leased
-- concurrency slots, shared by every replica on this schema. Times are
-- microseconds since the epoch on the database server's clock, so that
-- replicas whose clocks differ share one schedule.

-- One row per bucket (a type, or a type and a key): tat is the GCRA
-- theoretical arrival time (the bucket is full when it is not after now);
-- line is where the next refused caller is told to come back (see
-- courier_limit_take); used is the last take, for sweeping.
CREATE TABLE limit_buckets (
	name text   PRIMARY KEY,
	tat  bigint NOT NULL,
	line bigint NOT NULL,
	used bigint NOT NULL
);

-- One row per slot taken: its holder (a run) and when its lease lapses.
CREATE TABLE limit_slots (
	name    text   NOT NULL,
	holder  text   NOT NULL,
	expires bigint NOT NULL,
	PRIMARY KEY (name, holder)
);
CREATE INDEX limit_slots_holder ON limit_slots (holder);

-- Takes up to p_want tokens of bucket p_name (one every p_interval µs, at
-- most p_burst at once) that are free within p_max_wait µs, in one call
-- (one round trip, the bucket's row locked for its duration). Token i
-- (1..) after a base of greatest(tat, now) is free at base + i*interval -
-- burst*interval. With none free in time, nothing is taken and retry_us
-- says when the first one is; with p_queue, refused callers are instead
-- given places one interval apart after the last one given (line), so that
-- they do not all come back at once.
CREATE FUNCTION courier_limit_take(p_name text, p_interval bigint, p_burst integer, p_want integer, p_max_wait bigint, p_queue boolean,
	OUT granted integer, OUT first_us bigint, OUT retry_us bigint) AS $$
DECLARE
	now_us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
	b limit_buckets;
	base bigint;
	n bigint;
BEGIN
	-- A bucket lost in a crash only lets a few tokens through again: do not
	-- wait for the WAL flush (this transaction's commit only).
	PERFORM set_config('synchronous_commit', 'off', true);
	SELECT * INTO b FROM limit_buckets WHERE name = p_name FOR UPDATE;
	IF NOT FOUND THEN
		INSERT INTO limit_buckets (name, tat, line, used) VALUES (p_name, 0, 0, now_us) ON CONFLICT (name) DO NOTHING;
		SELECT * INTO b FROM limit_buckets WHERE name = p_name FOR UPDATE;
	END IF;
	base := greatest(b.tat, now_us);
	n := (now_us + p_max_wait + p_burst::bigint * p_interval - base);
	n := CASE WHEN n < p_interval THEN 0 ELSE least(p_want::bigint, n / p_interval) END;
	IF n >= 1 THEN
		granted := n;
		first_us := base + p_interval - p_burst::bigint * p_interval - now_us;
		retry_us := 0;
		UPDATE limit_buckets SET tat = base + n * p_interval, used = now_us WHERE name = p_name;
	ELSE
		granted := 0;
		first_us := 0;
		retry_us := base + p_interval - p_burst::bigint * p_interval - now_us;
		IF p_queue THEN
			retry_us := greatest(b.line, now_us + retry_us) - now_us;
			UPDATE limit_buckets SET line = now_us + retry_us + p_interval, used = now_us WHERE name = p_name;
		END IF;
	END IF;
	-- Now and then, forget buckets unused for an hour (full again by then)
	-- and slots whose lease lapsed an hour ago.
	IF random() < 0.0005 THEN
		DELETE FROM limit_buckets WHERE used < now_us - 3600000000;
		DELETE FROM limit_slots WHERE expires < now_us - 3600000000;
	END IF;
END
$$ LANGUAGE plpgsql;

-- Takes slots of p_name for the holders p_holders, in order, until now +
-- p_lease_us, as many as p_max live slots allow (slots whose lease lapsed
-- are dropped first; a holder that has a slot keeps it, renewed), and
-- returns how many: the first that many holders have one. An advisory lock
-- per name makes count-then-insert one step across replicas.
CREATE FUNCTION courier_slots_take(p_name text, p_max integer, p_holders text[], p_lease_us bigint) RETURNS integer AS $$
DECLARE
	now_us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
	n integer;
	k integer;
BEGIN
	PERFORM set_config('synchronous_commit', 'off', true);
	PERFORM pg_advisory_xact_lock(hashtextextended('courier.slot:' || p_name, 0));
	DELETE FROM limit_slots WHERE name = p_name AND expires < now_us;
	SELECT count(*) INTO n FROM limit_slots WHERE name = p_name AND holder <> ALL (p_holders);
	k := least(greatest(p_max - n, 0), coalesce(array_length(p_holders, 1), 0));
	IF k > 0 THEN
		INSERT INTO limit_slots (name, holder, expires)
			SELECT p_name, h, now_us + p_lease_us FROM unnest(p_holders[1:k]) AS h
			ON CONFLICT (name, holder) DO UPDATE SET expires = excluded.expires;
	END IF;
	RETURN k;
END
$$ LANGUAGE plpgsql;

-- Renews (p_lease_us >= 0) or releases (p_lease_us < 0) the slots of
-- p_holders, committed without waiting for the WAL flush as above.
CREATE FUNCTION courier_slots_update(p_holders text[], p_lease_us bigint) RETURNS void AS $$
BEGIN
	PERFORM set_config('synchronous_commit', 'off', true);
	IF p_lease_us < 0 THEN
		DELETE FROM limit_slots WHERE holder = ANY(p_holders);
	ELSE
		UPDATE limit_slots SET expires = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint + p_lease_us WHERE holder = ANY(p_holders);
	END IF;
END
$$ LANGUAGE plpgsql;

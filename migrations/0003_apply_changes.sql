-- Applies a batch's state changes (see src/cluster/changes.rs) in one call: each change is one
-- element of `changes`, {"op": ..., arguments}, applied under its guard. The answer says, per
-- change, `applied` or `refused` (its guard did not hold: the run was not in the state the change
-- expects). An error aborts the call (and the batch's transaction): the writer then applies that
-- batch's changes one by one, each in a savepoint, so that only the failing one is refused. One
-- round trip per batch instead of three per change.
CREATE FUNCTION sustainbot_apply(changes jsonb) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    c jsonb;
    answers text[] := '{}';
    touched bigint;
BEGIN
    FOR c IN SELECT value FROM jsonb_array_elements(changes) LOOP
            CASE c->>'op'
            WHEN 'started' THEN
                IF (c->>'owned')::boolean THEN
                    -- A run this instance accepted, approved or took over: still queued, still its.
                    UPDATE runs SET status = 'running', started_at = now(),
                        lease_until = clock_timestamp()
                            + make_interval(secs => (c->>'lease_seconds')::float8)
                    WHERE trace_id = c->>'trace_id' AND status = 'queued'
                        AND owner = c->>'instance';
                ELSE
                    -- A synchronous run gets its row now; a trace id already in use is refused.
                    INSERT INTO runs (trace_id, workflow_name, drag_mode, actor, principal, request,
                                      governed, status, owner, lease_until, started_at)
                    VALUES (c->>'trace_id', c->>'workflow_name', c->>'drag_mode', c->>'actor',
                            c->'principal', c->'request', (c->>'governed')::boolean, 'running',
                            c->>'instance',
                            clock_timestamp() + make_interval(secs => (c->>'lease_seconds')::float8),
                            now())
                    ON CONFLICT (trace_id) DO NOTHING;
                END IF;
            WHEN 'ended' THEN
                UPDATE runs SET status = c->>'status', outcome = c->>'outcome', error = c->>'error',
                    steps = NULLIF(c->'steps', 'null'::jsonb), finished_at = now(), lease_until = NULL
                WHERE trace_id = c->>'trace_id' AND status = c->>'from' AND owner = c->>'instance';
            WHEN 'approval_requested' THEN
                INSERT INTO runs (trace_id, workflow_name, drag_mode, actor, principal, request,
                                  governed, status, expires_at)
                VALUES (c->>'trace_id', c->>'workflow_name', c->>'drag_mode', c->>'actor',
                        c->'principal', c->'request', (c->>'governed')::boolean,
                        'pending_approval', (c->>'expires_at')::timestamptz)
                ON CONFLICT (trace_id) DO NOTHING;
            WHEN 'decided' THEN
                UPDATE runs SET status = c->>'status', approved = (c->>'status' = 'queued'),
                    owner = c->>'owner',
                    lease_until = CASE WHEN c->>'status' = 'queued'
                        THEN clock_timestamp() + make_interval(secs => (c->>'lease_seconds')::float8)
                        END,
                    finished_at = CASE WHEN c->>'status' = 'queued' THEN NULL ELSE now() END,
                    error = c->>'error'
                WHERE trace_id = c->>'trace_id' AND status = 'pending_approval'
                    -- An approval after the expiry does not count, whatever the decider's clock.
                    AND (c->>'status' <> 'queued' OR expires_at > now());
            WHEN 'lost' THEN
                UPDATE runs SET status = 'failed', error = c->>'error', finished_at = now(),
                    lease_until = NULL
                WHERE trace_id = c->>'trace_id' AND status = 'running' AND lease_until < now();
            ELSE
                RAISE EXCEPTION 'unknown state change %', c->>'op';
            END CASE;
            GET DIAGNOSTICS touched = ROW_COUNT;
            answers := answers || (CASE WHEN touched = 1 THEN 'applied' ELSE 'refused' END);
    END LOOP;
    RETURN answers;
END
$$;

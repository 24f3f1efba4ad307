-- SustainBot's shared state in PostgreSQL (DATABASE_URL): one audit chain, the runs with their
-- queue and approvals, and the instances that serve them. See docs/scaling.md.

-- The audit chain: one row per record. `line` is the record's exact line without its final newline
-- (the bytes docs/audit-format.md defines; an export writes them back with a newline each).
CREATE TABLE audit_records (
    seq         BIGINT PRIMARY KEY,
    line        BYTEA NOT NULL,
    hash        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    trace_id    TEXT,
    recorded_at TIMESTAMPTZ NOT NULL,
    instance    TEXT
);
CREATE INDEX audit_records_trace_id ON audit_records (trace_id, seq) WHERE trace_id IS NOT NULL;
CREATE INDEX audit_records_kind ON audit_records (kind, seq);

-- The chain head: one row, locked (SELECT ... FOR UPDATE) by every transaction that appends, so
-- appends from every instance form one chain. `stamp` is the last record's timestamp (the next is
-- never earlier); `checkpoint_seq` the seq of the last signed checkpoint.
CREATE TABLE audit_head (
    id             SMALLINT PRIMARY KEY CHECK (id = 1),
    seq            BIGINT NOT NULL,
    hash           TEXT NOT NULL,
    stamp          TEXT NOT NULL,
    checkpoint_seq BIGINT NOT NULL
);
INSERT INTO audit_head (id, seq, hash, stamp, checkpoint_seq)
VALUES (1, 0, 'sha256:0000000000000000000000000000000000000000000000000000000000000000', '', 0);

-- The runs the instances share: queued (accepted, not started), running, waiting for approval,
-- and finished. `owner` is the instance responsible for a queued or running run until
-- `lease_until`; it renews the lease while it lives. A state change and its audit record commit
-- in one transaction.
CREATE TABLE runs (
    trace_id        TEXT PRIMARY KEY,
    workflow_name   TEXT NOT NULL,
    drag_mode       TEXT NOT NULL,
    actor           TEXT,
    principal       JSONB NOT NULL,
    request         JSONB NOT NULL,
    governed        BOOLEAN NOT NULL,
    status          TEXT NOT NULL,
    approved        BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at      TIMESTAMPTZ,
    owner           TEXT,
    lease_until     TIMESTAMPTZ,
    cancel_requested_by TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    outcome         TEXT,
    error           TEXT,
    steps           JSONB
);
CREATE INDEX runs_active ON runs (status, lease_until) WHERE status IN ('queued', 'running');
CREATE INDEX runs_pending ON runs (expires_at) WHERE status = 'pending_approval';
CREATE INDEX runs_created ON runs (created_at DESC);

-- The instances, with a heartbeat (what /health shows of the others).
CREATE TABLE instances (
    id           TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

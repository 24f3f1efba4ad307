-- API keys for machines when DATABASE_URL is set: one table every instance and the command line
-- share (hashes only, never a key). See docs/identity.md, "API keys".

-- One row per key. `seq` is the order of creation (lists and the order changes are recorded in);
-- `created_by` and `revoked_by` are principals as the audit trail writes them.
CREATE TABLE api_keys (
    seq                 BIGSERIAL NOT NULL UNIQUE,
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    owner               TEXT NOT NULL,
    role                TEXT NOT NULL,
    workflows           JSONB,
    created_at          TIMESTAMPTZ NOT NULL,
    created_by          JSONB NOT NULL,
    expires_at          TIMESTAMPTZ,
    revoked_at          TIMESTAMPTZ,
    revoked_by          JSONB,
    last_used_at        TIMESTAMPTZ,
    hash                TEXT NOT NULL,
    creation_recorded   BOOLEAN NOT NULL DEFAULT FALSE,
    revocation_recorded BOOLEAN NOT NULL DEFAULT FALSE
);

-- The keys' version: one counter row, bumped by every change to the table, by whatever made it
-- (a server, the command line, or someone with psql), in the change's own transaction. Servers
-- read it every second and read the keys again only when it moved.
CREATE TABLE api_keys_version (
    id      SMALLINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO api_keys_version (id, version) VALUES (1, 0);

CREATE FUNCTION api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE api_keys_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_changed();
CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed();

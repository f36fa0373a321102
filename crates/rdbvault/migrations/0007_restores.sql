-- A restore of a backup into an instance: the one in the DCS path (whose
-- backup it is) or, with rdbvault's `target_instance_id`, another of the
-- same project. Counters say how each key was written.
CREATE TABLE restores (
    id                 TEXT PRIMARY KEY,
    instance_id        TEXT NOT NULL REFERENCES instances(id),  -- the instance in the path
    target_instance_id TEXT NOT NULL REFERENCES instances(id),  -- where the data goes
    project_id         TEXT NOT NULL,
    backup_id          TEXT NOT NULL REFERENCES backups(id),
    name               TEXT NOT NULL,
    remark             TEXT,
    mode               TEXT NOT NULL,             -- replace | merge
    method             TEXT NOT NULL,             -- auto | replicate | restore | commands, as asked
    strict             BIGINT NOT NULL DEFAULT 0,
    status             TEXT NOT NULL,             -- waiting | restoring | succeed | failed
    stage              TEXT,                      -- what a running restore does now
    method_used        TEXT,                      -- what ran, and why when auto chose or fell back
    progress_bp        BIGINT,                    -- basis points, never decreasing
    bytes_done         BIGINT NOT NULL DEFAULT 0,
    bytes_total        BIGINT,
    keys_restored      BIGINT NOT NULL DEFAULT 0, -- written by RESTORE
    keys_rebuilt       BIGINT NOT NULL DEFAULT 0, -- written as native commands
    keys_replaced      BIGINT NOT NULL DEFAULT 0, -- merge: existing keys overwritten
    keys_skipped       BIGINT NOT NULL DEFAULT 0,
    skipped_detail     TEXT,                      -- why keys were skipped, by reason
    replica_of         TEXT,                      -- replicate: the listener the target was told to follow
    error_code         TEXT,
    error_msg          TEXT,
    created_at         BIGINT NOT NULL,
    started_at         BIGINT,
    finished_at        BIGINT,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX restores_by_instance ON restores (instance_id, created_at);
CREATE INDEX restores_by_target ON restores (target_instance_id, created_at);
CREATE INDEX restores_by_backup ON restores (backup_id, status);
-- One restore into an instance at a time, whichever node or request starts it.
CREATE UNIQUE INDEX restores_one_active ON restores (target_instance_id)
    WHERE status IN ('waiting', 'restoring');

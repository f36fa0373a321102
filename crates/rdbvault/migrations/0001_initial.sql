-- One schema for SQLite and PostgreSQL: only TEXT and BIGINT columns, times
-- as unix milliseconds (UTC), booleans as 0/1, lists and documents as JSON text.

-- A Redis deployment registered for backup (never provisioned by rdbvault).
CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    mode          TEXT NOT NULL,             -- single | ha | cluster
    addrs         TEXT NOT NULL,             -- JSON array of "host:port"
    username      TEXT,                      -- ACL user, NULL for AUTH <password>
    password      TEXT,                      -- never returned by the API, never logged
    tls           BIGINT NOT NULL DEFAULT 0,
    backup_policy TEXT,                      -- JSON BackupPolicy, NULL when none
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

-- One backup of one instance; a cluster backup has several files.
CREATE TABLE backups (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL REFERENCES instances(id),
    project_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    backup_type   TEXT NOT NULL,             -- manual | auto
    backup_format TEXT NOT NULL,             -- rdb | aof
    status        TEXT NOT NULL,             -- waiting | backuping | succeed | failed | expired | deleted
    remark        TEXT,
    bytes_done    BIGINT NOT NULL DEFAULT 0, -- progress numerator
    bytes_total   BIGINT,                    -- announced or estimated size, NULL when unknown
    size          BIGINT NOT NULL DEFAULT 0, -- stored bytes once succeed
    error_code    TEXT,
    error_msg     TEXT,
    source_node   TEXT,                      -- the node(s) the snapshot was pulled from
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    updated_at    BIGINT NOT NULL,
    expires_at    BIGINT                     -- set by retention policies
);
CREATE INDEX backups_by_instance ON backups (instance_id, created_at);
CREATE INDEX backups_by_status ON backups (status);

-- A stored file of a backup: one per shard.
CREATE TABLE backup_files (
    backup_id     TEXT NOT NULL REFERENCES backups(id),
    file_name     TEXT NOT NULL,
    object_key    TEXT NOT NULL,
    slots         TEXT,                      -- slot ranges of the shard, NULL outside clusters
    source_addr   TEXT NOT NULL,
    size          BIGINT NOT NULL DEFAULT 0,
    sha256        TEXT,
    rdb_version   BIGINT,
    redis_version TEXT,
    status        TEXT NOT NULL,             -- writing | stored | deleted
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (backup_id, file_name)
);

CREATE TABLE restores (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL REFERENCES instances(id),
    project_id    TEXT NOT NULL,
    backup_id     TEXT NOT NULL REFERENCES backups(id),
    name          TEXT NOT NULL,
    remark        TEXT,
    status        TEXT NOT NULL,             -- waiting | restoring | succeed | failed
    bytes_done    BIGINT NOT NULL DEFAULT 0,
    bytes_total   BIGINT,
    error_code    TEXT,
    error_msg     TEXT,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX restores_by_instance ON restores (instance_id, created_at);

-- Work for the workers of any node: claimed by `owner`, kept alive by
-- `heartbeat_at`, so a node that dies mid-job can be detected by another.
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,             -- backup | restore | retention
    target_id     TEXT NOT NULL,             -- the backup or restore it works on
    state         TEXT NOT NULL,             -- queued | running | done | failed | cancelled
    owner         TEXT,
    heartbeat_at  BIGINT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, created_at);

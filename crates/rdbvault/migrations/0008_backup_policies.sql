-- An instance's backup policy (DCS `instance_backup_policy`): at most one
-- per instance; absent means manual backups only.
CREATE TABLE backup_policies (
    instance_id     TEXT PRIMARY KEY REFERENCES instances(id),
    id              TEXT NOT NULL,             -- backup_policy_id
    backup_type     TEXT NOT NULL,             -- auto | manual
    save_days       BIGINT,                    -- retention of automatic backups
    period_type     TEXT,                      -- weekly
    backup_at       TEXT,                      -- days 1..7, comma separated
    begin_at        TEXT,                      -- HH:MM-HH:MM
    timezone_offset TEXT,                      -- +0800; NULL: UTC
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- An automatic backup: the window it ran in (DCS `period`) and the local
-- date it was due for; one per instance and date, across every node.
ALTER TABLE backups ADD COLUMN period TEXT;
ALTER TABLE backups ADD COLUMN due TEXT;
CREATE UNIQUE INDEX backups_one_per_due ON backups (instance_id, due) WHERE due IS NOT NULL;

-- At most one backup of an instance waiting or running at a time, enforced by
-- the database so two API nodes (or two racing requests) cannot both start one.
CREATE UNIQUE INDEX backups_one_active ON backups (instance_id)
    WHERE status IN ('waiting', 'backuping');

-- Restores, backup policies and retention are not built yet. The table and
-- columns the first migration made for them had no code behind them; each
-- comes back, in a new migration, with the code that uses it.
DROP TABLE restores;
ALTER TABLE backups DROP COLUMN expires_at;
ALTER TABLE instances DROP COLUMN backup_policy;

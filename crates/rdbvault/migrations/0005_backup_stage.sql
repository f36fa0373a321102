-- What a running backup is doing now ("waiting for the fork", "transferring"),
-- the progress it reports (basis points, 0..10000, never decreasing), and the
-- instance's used_memory when it ran: size / used_memory of the last
-- successful backup estimates the size of the next diskless transfer.
ALTER TABLE backups ADD COLUMN stage TEXT;
ALTER TABLE backups ADD COLUMN progress_bp BIGINT;
ALTER TABLE backups ADD COLUMN used_memory BIGINT;

-- Multipart uploads started in an S3 store and not yet completed or
-- aborted. A crash, a kill, or a store that is down when a backup fails can
-- leave one behind; the sweep aborts those whose backup is no longer running.
CREATE TABLE pending_uploads (
    upload_id  TEXT PRIMARY KEY,
    backup_id  TEXT NOT NULL,
    object_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX pending_uploads_by_backup ON pending_uploads (backup_id);

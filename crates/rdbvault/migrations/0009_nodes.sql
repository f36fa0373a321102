-- The rdbvault nodes sharing this metadata store, as each last reported
-- itself: a node checks at start that what it stores can be shared.
CREATE TABLE nodes (
    id              TEXT PRIMARY KEY,
    storage         TEXT NOT NULL,             -- local | s3
    shared_data_dir BIGINT NOT NULL,           -- 1: its local store is on shared storage
    started_at      BIGINT NOT NULL,
    seen_at         BIGINT NOT NULL
);

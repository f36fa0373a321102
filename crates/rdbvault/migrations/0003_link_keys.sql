-- Server-side keys that sign download links of the local store. Shared by all
-- nodes through the metadata store; a retired key keeps verifying until the
-- longest link it can have signed has expired.
CREATE TABLE link_keys (
    id         TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,          -- hex
    created_at BIGINT NOT NULL,
    retired_at BIGINT                  -- NULL while it signs new links
);

-- Secrets are kept sealed with the node's master key (src/master_key.rs):
-- the plaintext columns are emptied at start once their values are sealed.
ALTER TABLE instances ADD COLUMN password_sealed TEXT;
ALTER TABLE link_keys ADD COLUMN secret_sealed TEXT;

-- The id (never the key) of the master key every sealed value is sealed
-- with: a node holding another key refuses to start.
CREATE TABLE sealing (
    only_row   BIGINT PRIMARY KEY CHECK (only_row = 1),
    key_id     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

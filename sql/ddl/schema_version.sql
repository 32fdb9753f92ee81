-- schema_version: which shape of the warehouse this file has, so a newer release can upgrade it.
-- Grain: one row per upgrade (and one for the creation). Key: version.
-- Loaded: by nelo_etl.upgrade, in the upgrade's transaction; the highest version is the shape.
-- A warehouse without this table was made before versioning (version 0).
CREATE TABLE IF NOT EXISTS schema_version (
    version      INTEGER   NOT NULL PRIMARY KEY,
    upgraded_ts  TIMESTAMP NOT NULL,   -- UTC
    note         VARCHAR
);

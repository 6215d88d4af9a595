-- Run once, when the PostgreSQL volume is first made (docker-entrypoint-initdb.d): the
-- read-model database store-sync keeps from the dispatch topic (reports, BI). The case
-- store itself is the database `streetwatch` (POSTGRES_DB), written by the dispatch worker.
CREATE DATABASE streetwatch_read OWNER streetwatch;

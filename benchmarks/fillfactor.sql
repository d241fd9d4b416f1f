-- One-off experiment behind the README's fillfactor note (not part of make bench):
--   psql -X postgres://postgres@127.0.0.1:5432/bench -f benchmarks/fillfactor.sql
-- Two copies of casusult_post, fillfactor 100 (the default) and 80, the same 100,000 random
-- rows incremented in id order. With free space in each page PostgreSQL can make the update
-- HOT (no index entries written, `impressions` is in no index); compare the times and the
-- n_tup_hot_upd column.
\timing on
DROP TABLE IF EXISTS ff_test_100, ff_test_80;
CREATE TABLE ff_test_100 (LIKE casusult_post INCLUDING ALL);
CREATE TABLE ff_test_80 (LIKE casusult_post INCLUDING ALL) WITH (fillfactor = 80);
INSERT INTO ff_test_100 SELECT * FROM casusult_post;
INSERT INTO ff_test_80 SELECT * FROM casusult_post;
VACUUM ANALYZE ff_test_100;
VACUUM ANALYZE ff_test_80;
CREATE TEMP TABLE ff_pending AS SELECT id, 1 AS c FROM casusult_post ORDER BY random() LIMIT 100000;
CREATE TEMP TABLE ff_sorted AS SELECT * FROM ff_pending ORDER BY id;
\echo fillfactor 100, first flush
UPDATE ff_test_100 p SET impressions = p.impressions + s.c FROM ff_sorted s WHERE p.id = s.id;
\echo fillfactor 80, first flush
UPDATE ff_test_80 p SET impressions = p.impressions + s.c FROM ff_sorted s WHERE p.id = s.id;
VACUUM ff_test_100;
VACUUM ff_test_80;
\echo fillfactor 100, second flush after VACUUM
UPDATE ff_test_100 p SET impressions = p.impressions + s.c FROM ff_sorted s WHERE p.id = s.id;
\echo fillfactor 80, second flush after VACUUM
UPDATE ff_test_80 p SET impressions = p.impressions + s.c FROM ff_sorted s WHERE p.id = s.id;
SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname LIKE 'ff_test_%';
DROP TABLE ff_test_100, ff_test_80;

-- Console page times (issue 13; measured by `riskwatch bench --part console`, docs/console.md).
--
-- The alarm board (`GET /console/` and `/console/board/rows`, which every open board refetches on each
-- alarm event) reads the alarms that are not normal or still active, out of every (rule, subject) that
-- ever alarmed: with 20,000 alarm rows the bureau's board scanned all of them (35 ms); this partial index
-- holds only the few percent the board shows (21 ms, the rest is the join to the points registry). Its
-- predicate is the board query's own (api/web/queries.py `board_alarms`), so the planner can use it.
CREATE INDEX IF NOT EXISTS alarms_board ON alarms (plant_id) WHERE state <> 'normal' OR active;

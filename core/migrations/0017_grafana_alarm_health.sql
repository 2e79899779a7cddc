-- Alarm-system health per operator position on the bureau dashboard (issue 17; ISA-18.2 / EEMUA 191).
--
-- Two views for Grafana, both enterprise-free: the bureau dashboard is the bureau's, so it needs which position
-- an alarm reached, not whose it is.
--
-- grafana.alarm_positions: every operator position exactly as hazards/records/store.py `positions` defines them:
--   a plant without a row in plant_positions is its own control room 'cr-<plant id>' (min severity medium),
--   every row of operator_positions (explicit control rooms, the bureau duty desk).
-- grafana.position_alarm_events: the activations and clears each position sees, one row per (event, position):
--   a plant's events go to its control room at or above that room's min severity, and to every bureau desk at
--   or above the desk's. 'low' is below every position (records.store reads medium, high, urgent only). Only
--   activate and clear are exposed: rates, floods and bad actors count annunciated activations, standing
--   alarms need activate/clear; acks, shelving and their actors stay in grafana.alarm_events.
-- Neither view hides rows a reader could not already see in grafana.alarm_events, so no security_barrier (which
-- would also keep the panels' time filter from reaching the alarm_events hypertable's chunks).
--
-- Idempotent; grants re-applied by riskwatch_grafana_grants() (0009).

CREATE OR REPLACE VIEW grafana.alarm_positions AS
SELECT 'cr-' || pl.id AS position_id, pl.name || ' 中控室 control room' AS name, 'control_room'::text AS kind,
       'medium'::text AS min_severity
FROM public.plants pl
WHERE NOT EXISTS (SELECT FROM public.plant_positions pp WHERE pp.plant_id = pl.id)
UNION ALL
SELECT op.id, op.name, op.kind, op.min_severity FROM public.operator_positions op;

CREATE OR REPLACE VIEW grafana.position_alarm_events AS
WITH members AS (
    SELECT pl.id AS plant_id, coalesce(op.id, 'cr-' || pl.id) AS position_id,
           coalesce(op.min_severity, 'medium') AS min_severity
    FROM public.plants pl
    LEFT JOIN public.plant_positions pp ON pp.plant_id = pl.id
    LEFT JOIN public.operator_positions op ON op.id = pp.position_id
    UNION ALL
    SELECT pl.id, op.id, op.min_severity
    FROM public.operator_positions op CROSS JOIN public.plants pl
    WHERE op.kind = 'bureau_desk'
)
SELECT e.time, m.position_id, e.rule_id, e.subject, e.event, e.annunciate, e.severity
FROM public.alarm_events e
JOIN members m ON m.plant_id = e.plant_id
WHERE e.event IN ('activate', 'clear')
  AND array_position(ARRAY['medium', 'high', 'urgent'], e.severity)
      >= array_position(ARRAY['medium', 'high', 'urgent'], m.min_severity);

SELECT riskwatch_grafana_grants();

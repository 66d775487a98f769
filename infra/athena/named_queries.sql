-- Athena (Trino) queries over the genesys-parquet tables.
--
-- Each query starts with `-- name: <id>` and `-- description: ...`; infra/gen_glue_tables.py
-- copies them into AWS::Athena::NamedQuery resources of template.yaml (edit them HERE, then
-- regenerate). They read the last 30 days; the `conversation_date` filter prunes partitions.
--
-- Where the metrics live (Genesys Analytics): nOffered, tAbandon and tAnswered are on the ACD
-- (queue) session, tHandle on the agent's session; both sessions' segments carry queue_id. So
-- each session's queue is taken from its own segments.
--
-- Names come from the reference tables' `<table>_latest` views (the newest row per id across
-- snapshots, so a queue, agent or code deleted since keeps its last name); an id no snapshot
-- ever named (deleted before the first one) shows as the id itself.

-- name: avg_handle_time_per_queue_per_day
-- description: Average handle time (tHandle, seconds) per queue per day, last 30 days.
WITH session_queue AS (
  SELECT conversation_date, conversation_id, session_id, max(queue_id) AS queue_id
  FROM segments
  WHERE queue_id IS NOT NULL
    AND conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
  GROUP BY conversation_date, conversation_id, session_id
)
SELECT m.conversation_date,
       coalesce(qn.name, q.queue_id) AS queue,
       q.queue_id,
       count(*) AS handled,
       round(avg(m.value) / 1000.0, 1) AS avg_handle_seconds
FROM session_metrics m
JOIN session_queue q
  ON q.conversation_date = m.conversation_date
 AND q.conversation_id = m.conversation_id
 AND q.session_id = m.session_id
LEFT JOIN queues_latest qn ON qn.queue_id = q.queue_id
WHERE m.name = 'tHandle'
  AND m.conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
GROUP BY m.conversation_date, q.queue_id, qn.name
ORDER BY m.conversation_date, queue;

-- name: abandon_rate_per_queue_per_day
-- description: Abandon rate (conversations with tAbandon / nOffered) per queue per day, last 30 days.
WITH session_queue AS (
  SELECT conversation_date, conversation_id, session_id, max(queue_id) AS queue_id
  FROM segments
  WHERE queue_id IS NOT NULL
    AND conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
  GROUP BY conversation_date, conversation_id, session_id
)
SELECT m.conversation_date,
       coalesce(qn.name, q.queue_id) AS queue,
       q.queue_id,
       sum(CASE WHEN m.name = 'nOffered' THEN m.value ELSE 0 END) AS offered,
       count_if(m.name = 'tAbandon') AS abandoned,
       round(CAST(count_if(m.name = 'tAbandon') AS double)
             / nullif(sum(CASE WHEN m.name = 'nOffered' THEN m.value ELSE 0 END), 0), 4) AS abandon_rate
FROM session_metrics m
JOIN session_queue q
  ON q.conversation_date = m.conversation_date
 AND q.conversation_id = m.conversation_id
 AND q.session_id = m.session_id
LEFT JOIN queues_latest qn ON qn.queue_id = q.queue_id
WHERE m.name IN ('nOffered', 'tAbandon')
  AND m.conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
GROUP BY m.conversation_date, q.queue_id, qn.name
ORDER BY m.conversation_date, queue;

-- name: transfers_per_conversation
-- description: Transfers per conversation (nTransferred metrics, and segments that ended in a transfer), last 30 days.
WITH metric_transfers AS (
  SELECT conversation_date, conversation_id, sum(value) AS n_transferred
  FROM session_metrics
  WHERE name = 'nTransferred'
    AND conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
  GROUP BY conversation_date, conversation_id
),
segment_transfers AS (
  SELECT conversation_date, conversation_id, count(*) AS transfer_segments
  FROM segments
  WHERE disconnect_type = 'transfer'
    AND conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
  GROUP BY conversation_date, conversation_id
)
SELECT c.conversation_date,
       c.conversation_id,
       c.conversation_start,
       coalesce(mt.n_transferred, 0) AS n_transferred,
       coalesce(st.transfer_segments, 0) AS transfer_segments
FROM conversations c
LEFT JOIN metric_transfers mt
  ON mt.conversation_date = c.conversation_date AND mt.conversation_id = c.conversation_id
LEFT JOIN segment_transfers st
  ON st.conversation_date = c.conversation_date AND st.conversation_id = c.conversation_id
WHERE c.conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
  AND (mt.n_transferred > 0 OR st.transfer_segments > 0)
ORDER BY n_transferred DESC, transfer_segments DESC, c.conversation_start;

-- name: service_level_per_queue_per_day
-- description: Service level (share of offered conversations answered within 20 s: tAnswered <= 20000 ms / nOffered) per queue per day, last 30 days.
WITH session_queue AS (
  SELECT conversation_date, conversation_id, session_id, max(queue_id) AS queue_id
  FROM segments
  WHERE queue_id IS NOT NULL
    AND conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
  GROUP BY conversation_date, conversation_id, session_id
)
SELECT m.conversation_date,
       coalesce(qn.name, q.queue_id) AS queue,
       q.queue_id,
       sum(CASE WHEN m.name = 'nOffered' THEN m.value ELSE 0 END) AS offered,
       count_if(m.name = 'tAnswered' AND m.value <= 20000) AS answered_within_20s,
       round(CAST(count_if(m.name = 'tAnswered' AND m.value <= 20000) AS double)
             / nullif(sum(CASE WHEN m.name = 'nOffered' THEN m.value ELSE 0 END), 0), 4) AS service_level
FROM session_metrics m
JOIN session_queue q
  ON q.conversation_date = m.conversation_date
 AND q.conversation_id = m.conversation_id
 AND q.session_id = m.session_id
LEFT JOIN queues_latest qn ON qn.queue_id = q.queue_id
WHERE m.name IN ('nOffered', 'tAnswered')
  AND m.conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
GROUP BY m.conversation_date, q.queue_id, qn.name
ORDER BY m.conversation_date, queue;

-- name: handled_per_queue_and_wrapup_code
-- description: Handled conversations (agent wrap-ups) per queue name and wrap-up code name, last 30 days.
SELECT coalesce(q.name, s.queue_id) AS queue,
       coalesce(w.name, s.wrap_up_code) AS wrap_up_code,
       count(DISTINCT s.conversation_id) AS handled
FROM segments s
LEFT JOIN queues_latest q ON q.queue_id = s.queue_id
LEFT JOIN wrapup_codes_latest w ON w.wrapup_code_id = s.wrap_up_code
WHERE s.wrap_up_code IS NOT NULL
  AND s.conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
GROUP BY 1, 2
ORDER BY handled DESC, queue, wrap_up_code;

-- name: handle_time_per_agent_per_day
-- description: Conversations handled and average handle time (tHandle, seconds) per agent name per day, last 30 days.
SELECT m.conversation_date,
       coalesce(u.name, p.user_id) AS agent,
       p.user_id,
       count(*) AS handled,
       round(avg(m.value) / 1000.0, 1) AS avg_handle_seconds
FROM session_metrics m
JOIN participants p
  ON p.conversation_date = m.conversation_date
 AND p.conversation_id = m.conversation_id
 AND p.participant_id = m.participant_id
LEFT JOIN users_latest u ON u.user_id = p.user_id
WHERE m.name = 'tHandle'
  AND p.user_id IS NOT NULL
  AND m.conversation_date >= date_format(current_date - INTERVAL '30' DAY, '%Y-%m-%d')
GROUP BY m.conversation_date, p.user_id, u.name
ORDER BY m.conversation_date, agent;

-- name: time_in_routing_status_per_agent_per_day
-- description: Seconds each agent spent in each routing status per day (open records closed at the end of their start day), with the agent's name, last 30 days.
WITH records AS (
  SELECT user_id, routing_status, start_time,
         coalesce(end_time, date_add('day', 1, date_trunc('day', start_time))) AS stop
  FROM user_routing_status
  WHERE status_date >= date_format(current_date - INTERVAL '31' DAY, '%Y-%m-%d')
),
per_day AS (
  SELECT r.user_id, r.routing_status, d AS day,
         to_unixtime(least(r.stop, CAST(date_add('day', 1, d) AS timestamp)))
           - to_unixtime(greatest(r.start_time, CAST(d AS timestamp))) AS seconds
  FROM records r
  CROSS JOIN UNNEST(sequence(CAST(r.start_time AS date),
                             CAST(r.stop - INTERVAL '0.001' SECOND AS date),
                             INTERVAL '1' DAY)) AS t (d)
  WHERE r.stop > r.start_time
)
SELECT p.day, p.user_id, coalesce(u.name, p.user_id) AS agent, p.routing_status,
       round(sum(p.seconds)) AS seconds
FROM per_day p
LEFT JOIN users_latest u ON u.user_id = p.user_id
WHERE p.day >= current_date - INTERVAL '30' DAY
GROUP BY p.day, p.user_id, coalesce(u.name, p.user_id), p.routing_status
ORDER BY p.day, agent, p.routing_status;

-- name: occupancy_per_agent_per_day
-- description: Occupancy per agent per day: time INTERACTING / time on queue (IDLE, INTERACTING, NOT_RESPONDING, COMMUNICATING), open records closed at the end of their start day, with the agent's name, last 30 days.
WITH records AS (
  SELECT user_id, routing_status, start_time,
         coalesce(end_time, date_add('day', 1, date_trunc('day', start_time))) AS stop
  FROM user_routing_status
  WHERE status_date >= date_format(current_date - INTERVAL '31' DAY, '%Y-%m-%d')
    AND routing_status IN ('IDLE', 'INTERACTING', 'NOT_RESPONDING', 'COMMUNICATING')
),
per_day AS (
  SELECT r.user_id, r.routing_status, d AS day,
         to_unixtime(least(r.stop, CAST(date_add('day', 1, d) AS timestamp)))
           - to_unixtime(greatest(r.start_time, CAST(d AS timestamp))) AS seconds
  FROM records r
  CROSS JOIN UNNEST(sequence(CAST(r.start_time AS date),
                             CAST(r.stop - INTERVAL '0.001' SECOND AS date),
                             INTERVAL '1' DAY)) AS t (d)
  WHERE r.stop > r.start_time
)
SELECT p.day, p.user_id, coalesce(u.name, p.user_id) AS agent,
       round(sum(CASE WHEN p.routing_status = 'INTERACTING' THEN p.seconds ELSE 0 END)) AS interacting_seconds,
       round(sum(p.seconds)) AS on_queue_seconds,
       round(sum(CASE WHEN p.routing_status = 'INTERACTING' THEN p.seconds ELSE 0 END)
             / nullif(sum(p.seconds), 0), 3) AS occupancy
FROM per_day p
LEFT JOIN users_latest u ON u.user_id = p.user_id
WHERE p.day >= current_date - INTERVAL '30' DAY
GROUP BY p.day, p.user_id, coalesce(u.name, p.user_id)
ORDER BY p.day, agent;

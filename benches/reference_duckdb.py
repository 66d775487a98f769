"""DuckDB reference for `cargo bench --bench convert`: its fastest path, native nested types
(`read_json`, full sampling), `unnest` of the lists, `COPY ... (FORMAT parquet, COMPRESSION zstd)`
for conversations, participants, sessions, segments and session metrics. It needs about 1.3 GB
of memory per 50k conversations.

usage: python reference_duckdb.py INPUT.ndjson OUT_DIR
"""

import os
import sys

import duckdb

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE TABLE pages AS SELECT * FROM read_json('{src}', format='newline_delimited', sample_size=-1, maximum_object_size=1000000000)")
con.execute("CREATE TABLE c AS SELECT unnest(conversations) AS c FROM pages")
con.execute(f"COPY (SELECT c.* EXCLUDE (participants) FROM (SELECT unnest(c) FROM c) c) TO '{out}/conversations.parquet' (FORMAT parquet, COMPRESSION zstd)")
con.execute("CREATE TABLE p AS SELECT c.conversationId AS conversation_id, c.conversationStart AS conversation_start, unnest(c.participants) AS p FROM c")
con.execute(f"COPY (SELECT conversation_id, conversation_start, unnest(p) FROM p) TO '{out}/participants.parquet' (FORMAT parquet, COMPRESSION zstd)")
con.execute("CREATE TABLE s AS SELECT conversation_id, conversation_start, p.participantId AS participant_id, unnest(p.sessions) AS s FROM p")
con.execute(f"COPY (SELECT conversation_id, conversation_start, participant_id, unnest(s) FROM s) TO '{out}/sessions.parquet' (FORMAT parquet, COMPRESSION zstd)")
con.execute(f"COPY (SELECT conversation_id, conversation_start, participant_id, s.sessionId AS session_id, unnest(s.segments, recursive := true) FROM s) TO '{out}/segments.parquet' (FORMAT parquet, COMPRESSION zstd)")
con.execute(f"COPY (SELECT conversation_id, conversation_start, participant_id, s.sessionId AS session_id, unnest(s.metrics, recursive := true) FROM s) TO '{out}/session_metrics.parquet' (FORMAT parquet, COMPRESSION zstd)")

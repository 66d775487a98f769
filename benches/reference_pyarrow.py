"""Reference converter for `cargo bench --bench convert`: what a data engineer writes with pyarrow.

Streams NDJSON query pages (`{"conversations":[...],"totalHits":N}` a line) with
`pyarrow.json.open_json` and a pinned schema (no inference; unknown fields ignored), then flattens
each batch columnar (`list_flatten` + `list_parent_indices` + `take` of the parent keys) into five
zstd Parquet tables: conversations, participants, sessions (with the flow flattened), segments
and session_metrics. Memory is bounded by the read block size and the writers' row groups.

usage: python reference_pyarrow.py INPUT.ndjson OUT_DIR
"""

import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

TS = pa.timestamp("ms", tz="UTC")
S = pa.string()

METRIC = pa.struct([("name", S), ("value", pa.int64()), ("emitDate", TS)])
SEGMENT = pa.struct(
    [
        ("segmentStart", TS),
        ("segmentEnd", TS),
        ("segmentType", S),
        ("disconnectType", S),
        ("queueId", S),
        ("wrapUpCode", S),
        ("wrapUpNote", S),
        ("conference", pa.bool_()),
        ("sipResponseCodes", pa.list_(pa.int64())),
        ("q850ResponseCodes", pa.list_(pa.int64())),
        ("requestedRoutingSkillIds", pa.list_(S)),
    ]
)
FLOW = pa.struct(
    [
        ("flowId", S),
        ("flowName", S),
        ("flowType", S),
        ("flowVersion", S),
        ("entryType", S),
        ("entryReason", S),
        ("exitReason", S),
        ("transferType", S),
        ("transferTargetName", S),
        ("transferTargetAddress", S),
        ("startingLanguage", S),
        ("endingLanguage", S),
        ("issuedCallback", pa.bool_()),
    ]
)
SESSION = pa.struct(
    [
        ("sessionId", S),
        ("mediaType", S),
        ("direction", S),
        ("messageType", S),
        ("ani", S),
        ("dnis", S),
        ("sessionDnis", S),
        ("addressFrom", S),
        ("addressTo", S),
        ("edgeId", S),
        ("protocolCallId", S),
        ("provider", S),
        ("recording", pa.bool_()),
        ("requestedRoutings", pa.list_(S)),
        ("usedRouting", S),
        ("routingRing", pa.int64()),
        ("cc", pa.list_(S)),
        ("callbackNumbers", pa.list_(S)),
        ("callbackScheduledTime", TS),
        ("callbackUserName", S),
        ("skipEnabled", pa.bool_()),
        ("timeoutSeconds", pa.int64()),
        ("flow", FLOW),
        ("segments", pa.list_(SEGMENT)),
        ("metrics", pa.list_(METRIC)),
    ]
)
PARTICIPANT = pa.struct(
    [
        ("participantId", S),
        ("participantName", S),
        ("purpose", S),
        ("userId", S),
        ("externalContactId", S),
        ("sessions", pa.list_(SESSION)),
    ]
)
CONVERSATION = pa.struct(
    [
        ("conversationId", S),
        ("conversationStart", TS),
        ("conversationEnd", TS),
        ("originatingDirection", S),
        ("conversationInitiator", S),
        ("customerParticipation", pa.bool_()),
        ("externalTag", S),
        ("divisionIds", pa.list_(S)),
        ("mediaStatsMinConversationMos", pa.float64()),
        ("mediaStatsMinConversationRFactor", pa.float64()),
        ("participants", pa.list_(PARTICIPANT)),
    ]
)
PAGE = pa.schema([("conversations", pa.list_(CONVERSATION)), ("totalHits", pa.int64())])


def scalars(structs, skip=()):
    """The struct's fields as columns, nested structs flattened with a prefix, lists of
    structs (child tables) left out."""
    cols = {}
    for field, arr in zip(structs.type, structs.flatten()):
        if field.name in skip:
            continue
        t = field.type
        if pa.types.is_struct(t):
            for sub, sarr in zip(t, arr.flatten()):
                cols[f"{field.name}_{sub.name}"] = sarr
        elif pa.types.is_list(t) and pa.types.is_struct(t.value_type):
            continue
        else:
            cols[field.name] = arr
    return cols


def child(lists, keys):
    """Flattens a list-of-structs column; returns (structs, parent keys repeated per element)."""
    parents = pc.list_parent_indices(lists)
    structs = pc.list_flatten(lists)
    return structs, {k: v.take(parents) for k, v in keys.items()}


class Writers:
    def __init__(self, out):
        self.out = out
        self.w = {}

    def write(self, name, cols):
        table = pa.table(cols)
        if name not in self.w:
            self.w[name] = pq.ParquetWriter(
                os.path.join(self.out, f"{name}.parquet"), table.schema, compression="zstd"
            )
        self.w[name].write_table(table)

    def close(self):
        for w in self.w.values():
            w.close()


def main(src, out):
    os.makedirs(out, exist_ok=True)
    reader = pj.open_json(
        src,
        read_options=pj.ReadOptions(block_size=16 << 20),
        parse_options=pj.ParseOptions(explicit_schema=PAGE, unexpected_field_behavior="ignore"),
    )
    w = Writers(out)
    for batch in reader:
        convs = pc.list_flatten(batch.column("conversations"))
        c = scalars(convs)
        w.write("conversations", c)
        keys = {"conversation_id": c["conversationId"], "conversation_start": c["conversationStart"]}

        parts, pkeys = child(convs.field("participants"), keys)
        p = scalars(parts)
        w.write("participants", {**pkeys, **p})
        pkeys["participant_id"] = p["participantId"]

        sess, skeys = child(parts.field("sessions"), pkeys)
        s = scalars(sess)
        w.write("sessions", {**skeys, **s})
        skeys["session_id"] = s["sessionId"]

        segs, gkeys = child(sess.field("segments"), skeys)
        w.write("segments", {**gkeys, **scalars(segs)})

        mets, mkeys = child(sess.field("metrics"), skeys)
        w.write("session_metrics", {**mkeys, **scalars(mets)})
    w.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

//! The tables, end to end through real Parquet files: a hand-made conversation with every field
//! of every model set (plus unicode, a null, an absent field, unknown fields and unknown enum
//! values) is converted and written, then read back with the parquet crate and with DuckDB.
//! Expected values come from a second, deliberately simple walk of the JSON (serde_json::Value)
//! driven by the same table specs, so the fast converter is checked against an independent one.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMillisecondType};
use bytes::Bytes;
use genesys_parquet::datasets::conversations as conv;
use genesys_parquet::interval::format_millis;
use genesys_parquet::page::{Page, PageOrigin};
use genesys_parquet::sink::parquet::{ParquetMeta, ParquetSettings, TableFileWriter};
use genesys_parquet::tables::schema::{Role, Ty};
use genesys_parquet::tables::{ConvertOptions, Converter, Table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Map, Value};

const DATE: &str = "2026-11-20";

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/full-conversation.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// Expected rows per table: (values of the API columns by column name, extra object).
type Rows = BTreeMap<Table, Vec<(Map<String, Value>, Map<String, Value>)>>;

fn expect_rows(conv: &Value) -> Rows {
    let mut rows = Rows::new();
    walk(conv::CONVERSATIONS, conv, &mut rows);
    rows
}

fn walk(t: Table, obj: &Value, rows: &mut Rows) {
    let spec = t.spec();
    let o = obj.as_object().expect("object");
    let mut cols = Map::new();
    let mut extra = Map::new();
    let mut known: Vec<&str> = spec.fields.iter().map(|f| f.json).collect();
    for c in t.columns() {
        if let Role::Field { .. } = c.role {
            let path = c
                .source
                .rsplit_once("[].")
                .map(|(_, p)| p)
                .unwrap_or(&c.source);
            let v = match path.split_once('.') {
                Some((outer, inner)) => o.get(outer).and_then(|x| x.get(inner)),
                None => o.get(path),
            };
            cols.insert(c.name.clone(), v.cloned().unwrap_or(Value::Null));
        }
    }
    for (json, child) in spec.children {
        known.push(json);
        for c in o.get(*json).and_then(Value::as_array).into_iter().flatten() {
            walk(*child, c, rows);
        }
    }
    if let Some(flat) = &spec.flatten {
        known.push(flat.json);
        if let Some(f) = o.get(flat.json) {
            for (k, v) in f.as_object().expect("flow object") {
                if let Some((_, child)) = flat.children.iter().find(|(j, _)| j == k) {
                    for c in v.as_array().into_iter().flatten() {
                        walk(*child, c, rows);
                    }
                } else if !flat.fields.iter().any(|x| x.json == k) {
                    extra.insert(format!("{}.{k}", flat.json), v.clone());
                }
            }
        }
    }
    if let Some((json, child)) = spec.map {
        known.push(json);
        for (k, v) in o.get(json).and_then(Value::as_object).into_iter().flatten() {
            let mut m = Map::new();
            m.insert("name".into(), json!(k));
            m.insert("value".into(), v.clone());
            rows.entry(child).or_default().push((m, Map::new()));
        }
    }
    for (k, v) in o {
        if !known.contains(&k.as_str()) {
            extra.insert(k.clone(), v.clone());
        }
    }
    rows.entry(t).or_default().push((cols, extra));
}

fn cell(a: &ArrayRef, i: usize) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    match a.data_type() {
        DataType::Utf8 => json!(a.as_string::<i32>().value(i)),
        DataType::Int64 => json!(a.as_primitive::<Int64Type>().value(i)),
        DataType::Float64 => json!(a.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => json!(a.as_boolean().value(i)),
        DataType::Timestamp(_, Some(tz)) if tz.as_ref() == "UTC" => {
            let ms = a.as_primitive::<TimestampMillisecondType>().value(i);
            json!(format_millis(
                chrono::DateTime::from_timestamp_millis(ms).expect("ms")
            ))
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>().value(i);
            Value::Array((0..l.len()).map(|j| cell(&l, j)).collect())
        }
        other => panic!("unexpected type {other}"),
    }
}

async fn write_tables(out: &Path, records: &str, raw: bool) -> BTreeMap<Table, usize> {
    let page = Page::parse_page_or_list(
        Bytes::from(records.to_string()),
        PageOrigin::new("t"),
        conv::DATASET.envelope,
    )
    .expect("page");
    let mut conv = Converter::new(
        &conv::DATASET,
        ConvertOptions {
            raw,
            ..ConvertOptions::default()
        },
    );
    let mut batches = conv.push_page(&page).expect("convert");
    batches.extend(conv.finish().expect("finish"));
    let settings = ParquetSettings::default();
    let meta = ParquetMeta {
        interval: format!("{DATE}T00:00:00.000Z/2026-11-21T00:00:00.000Z"),
        extracted_at: chrono::Utc::now(),
    };
    let mut counts = BTreeMap::new();
    for (i, tb) in batches.into_iter().enumerate() {
        let dir = out
            .join(tb.table.name())
            .join(format!("conversation_date={DATE}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = tokio::fs::File::create(dir.join(format!("part-{i:05}.parquet")))
            .await
            .expect("create");
        let mut w =
            TableFileWriter::try_new(file, tb.table, &settings, &meta, None).expect("writer");
        let n = tb.batch.num_rows();
        let mut b = tb.batch;
        b.remove_column(b.num_columns() - 1);
        w.write(&b).await.expect("write");
        w.close().await.expect("close");
        *counts.entry(tb.table).or_default() += n;
    }
    counts
}

fn read_table(out: &Path, t: Table) -> Vec<RecordBatch> {
    let dir = out.join(t.name()).join(format!("conversation_date={DATE}"));
    let mut batches = Vec::new();
    for e in std::fs::read_dir(&dir).expect("dir").flatten() {
        let f = std::fs::File::open(e.path()).expect("open");
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .expect("reader")
            .build()
            .expect("build");
        for b in r {
            batches.push(b.expect("batch"));
        }
    }
    batches
}

#[tokio::test]
async fn every_value_of_the_fixture_survives_parquet() {
    let conv = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    // Without `raw` (the default): the typed columns and `extra` alone keep every value.
    let counts = write_tables(dir.path(), &format!("[{conv}]"), false).await;
    let expected = expect_rows(&conv);

    for t in Table::all() {
        let want = expected.get(t).cloned().unwrap_or_default();
        assert_eq!(counts.get(t).copied().unwrap_or(0), want.len(), "{t}: rows");
        if want.is_empty() {
            continue;
        }
        let batches = read_table(dir.path(), *t);
        let got: Vec<(Map<String, Value>, Map<String, Value>)> = batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |i| {
                    let mut cols = Map::new();
                    let mut extra = Map::new();
                    for (c, a) in t.columns().iter().zip(b.columns()) {
                        match c.role {
                            Role::Field { .. } => {
                                cols.insert(c.name.clone(), cell(a, i));
                            }
                            Role::Extra => {
                                if let Value::String(s) = cell(a, i) {
                                    extra = serde_json::from_str(&s).expect("extra json");
                                }
                            }
                            _ => {}
                        }
                    }
                    (cols, extra)
                })
            })
            .collect();
        // Rows are written in the order the JSON walk visits them, except that a parent row
        // is pushed after its children; compare as sorted lists.
        let key =
            |r: &(Map<String, Value>, Map<String, Value>)| serde_json::to_string(r).expect("s");
        let mut got_sorted: Vec<String> = got.iter().map(key).collect();
        let mut want_sorted: Vec<String> = want.iter().map(key).collect();
        got_sorted.sort();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{t}: values");
    }

    // The deliberate oddities, spelled out.
    let conv_rows = &read_table(dir.path(), conv::CONVERSATIONS)[0];
    let extra = cell(conv_rows.column_by_name("extra").expect("extra"), 0);
    let extra: Value = serde_json::from_str(extra.as_str().expect("extra")).expect("json");
    assert_eq!(
        extra["sentimentScore2027"],
        json!({"v": 1, "label": "positive"})
    );
    assert_eq!(
        cell(conv_rows.column_by_name("external_tag").expect("c"), 0),
        Value::Null
    );
    // `raw` is opt-in: null by default, the whole record with `--raw`.
    assert_eq!(
        cell(conv_rows.column_by_name("raw").expect("raw"), 0),
        Value::Null
    );
    let with_raw = tempfile::tempdir().expect("tempdir");
    write_tables(with_raw.path(), &format!("[{conv}]"), true).await;
    let raw_rows = &read_table(with_raw.path(), conv::CONVERSATIONS)[0];
    let raw = cell(raw_rows.column_by_name("raw").expect("raw"), 0);
    let raw: Value = serde_json::from_str(raw.as_str().expect("raw")).expect("json");
    assert_eq!(raw, conv, "--raw keeps the record");
    let sessions = &read_table(dir.path(), conv::SESSIONS)[0];
    let media: Vec<Value> = (0..sessions.num_rows())
        .map(|i| cell(sessions.column_by_name("media_type").expect("c"), i))
        .collect();
    assert!(media.contains(&json!("hologram")), "{media:?}");
    let parts = &read_table(dir.path(), conv::PARTICIPANTS)[0];
    let names: Vec<Value> = (0..parts.num_rows())
        .map(|i| cell(parts.column_by_name("participant_name").expect("c"), i))
        .collect();
    assert!(
        names.contains(&json!("José Müller 王秀英 Zoë Ørsted")),
        "{names:?}"
    );
}

#[tokio::test]
async fn files_carry_the_schema_version_and_timestamps_are_utc() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tables(dir.path(), &format!("[{}]", fixture()), false).await;
    let d = dir
        .path()
        .join("segments")
        .join(format!("conversation_date={DATE}"));
    let path = std::fs::read_dir(&d)
        .expect("dir")
        .flatten()
        .next()
        .expect("file")
        .path();
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).expect("open"))
        .expect("reader");
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get("genesys_parquet.schema_version").as_deref(), Some("1"));
    assert_eq!(get("genesys_parquet.table").as_deref(), Some("segments"));
    let schema = reader.schema();
    assert_eq!(
        schema
            .field_with_name("segment_start")
            .expect("col")
            .data_type(),
        &Ty::Time.arrow()
    );
}

fn python() -> String {
    std::env::var("GP_PYTHON").unwrap_or_else(|_| {
        panic!("GP_PYTHON is not set: point it at a Python with duckdb and pyarrow (bash .ci/run does)")
    })
}

/// DuckDB reads what we wrote: counts, joins between tables, UTC timestamps, and the generated
/// Athena DDL's columns equal the files' columns one for one.
#[tokio::test]
async fn duckdb_reads_the_tables_and_the_ddl_matches_the_files() {
    let conv = fixture();
    // Three conversations: the fixture, and two copies with other ids.
    let mut recs = vec![conv.clone()];
    for id in [
        "11111111-0000-4000-8000-000000000001",
        "11111111-0000-4000-8000-000000000002",
    ] {
        let mut c = conv.clone();
        c["conversationId"] = json!(id);
        recs.push(c);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let counts = write_tables(dir.path(), &Value::Array(recs).to_string(), false).await;
    let ddl = genesys_parquet::tables::ddl::athena("genesys", "s3://b/p");
    std::fs::write(dir.path().join("ddl.sql"), &ddl).expect("ddl");
    let script = r#"
import duckdb, json, os, re
out = os.environ['OUT']
con = duckdb.connect()
res = {"counts": {}, "orphans": {}, "types": {}, "ddl_mismatch": []}
def rel(t):
    return f"read_parquet('{out}/{t}/*/*.parquet', hive_partitioning=true)"
for t in sorted(os.listdir(out)):
    if t.endswith('.sql'):
        continue
    res["counts"][t] = con.execute(f"SELECT count(*) FROM {rel(t)}").fetchone()[0]
checks = {
  "participants": ("conversations", "conversation_id"),
  "sessions": ("participants", "conversation_id, participant_id"),
  "segments": ("sessions", "conversation_id, participant_id, session_id"),
  "session_metrics": ("sessions", "conversation_id, participant_id, session_id"),
  "segment_properties": ("segments", "conversation_id, participant_id, session_id, segment_index"),
}
for child, (parent, keys) in checks.items():
    cond = " AND ".join(f"c.{k.strip()} = p.{k.strip()}" for k in keys.split(","))
    res["orphans"][child] = con.execute(
        f"SELECT count(*) FROM {rel(child)} c WHERE NOT EXISTS (SELECT 1 FROM {rel(parent)} p WHERE {cond})"
    ).fetchone()[0]
for name, typ, *_ in con.execute(f"DESCRIBE SELECT conversation_start, conversation_date FROM {rel('conversations')}").fetchall():
    res["types"][name] = typ
res["start"] = str(con.execute(f"SELECT conversation_start AT TIME ZONE 'UTC' FROM {rel('conversations')} LIMIT 1").fetchone()[0])
athena = {"string": "VARCHAR", "bigint": "BIGINT", "double": "DOUBLE", "boolean": "BOOLEAN",
          "timestamp": "TIMESTAMP WITH TIME ZONE", "array<string>": "VARCHAR[]", "array<bigint>": "BIGINT[]"}
ddl = open(os.path.join(out, "ddl.sql")).read()
for m in re.finditer(r"CREATE EXTERNAL TABLE IF NOT EXISTS `genesys`.`(\w+)` \((.*?)\n\)", ddl, re.S):
    table, body = m.group(1), m.group(2)
    cols = re.findall(r"^  `(\w+)` (\S+) COMMENT", body, re.M)
    if not os.path.isdir(os.path.join(out, table)):
        continue
    got = con.execute(f"DESCRIBE SELECT * EXCLUDE (conversation_date) FROM {rel(table)}").fetchall()
    got = [(n, t) for n, t, *_ in got]
    want = [(n, athena[t]) for n, t in cols]
    if got != want:
        res["ddl_mismatch"].append({"table": table, "files": got, "ddl": want})
print(json.dumps(res))
"#;
    let o = Command::new(python())
        .arg("-c")
        .arg(script)
        .env("OUT", dir.path())
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let res: Value = serde_json::from_slice(&o.stdout).expect("json");
    for (t, n) in &counts {
        assert_eq!(res["counts"][t.name()], json!(n), "{t}");
    }
    assert_eq!(res["counts"]["conversations"], 3);
    for (child, n) in res["orphans"].as_object().expect("orphans") {
        assert_eq!(n, &json!(0), "{child} rows without a parent");
    }
    assert_eq!(
        res["types"]["conversation_start"],
        "TIMESTAMP WITH TIME ZONE"
    );
    assert_eq!(res["start"], "2026-11-20 09:58:01.123000");
    assert_eq!(res["ddl_mismatch"], json!([]), "{}", res["ddl_mismatch"]);
}

#[tokio::test]
async fn the_real_examples_convert() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/genesys/examples");
    let mut conversations = 0;
    for name in [
        "conversation-record-1.blueprint.json",
        "conversation-record-2.blueprint.json",
        "details-query-page.splunk-mock.json",
    ] {
        let body = std::fs::read(Path::new(dir).join(name)).expect(name);
        let text = String::from_utf8(body).expect("utf8");
        let page = if text.trim_start().starts_with("{\"conversations\"")
            || text.contains("\"totalHits\"")
        {
            Page::parse(
                Bytes::from(text),
                PageOrigin::new(name),
                conv::DATASET.envelope,
            )
            .expect(name)
        } else {
            Page::parse_page_or_list(
                Bytes::from(format!("[{text}]")),
                PageOrigin::new(name),
                conv::DATASET.envelope,
            )
            .expect(name)
        };
        let mut c = Converter::new(&conv::DATASET, ConvertOptions::default());
        let mut batches = c.push_page(&page).expect(name);
        batches.extend(c.finish().expect(name));
        conversations += c.stats().conversations;
        assert!(c.stats().rows["segments"] > 0, "{name}");
        assert_eq!(
            c.stats().unknown_fields(),
            0,
            "{name}: {:?}",
            c.stats().unknown_fields
        );
    }
    assert_eq!(conversations, 3);
}

//! Golden outputs of the conversation tables: `genesys-parquet convert` of a fixed input must
//! produce exactly the rows and values frozen in `fixtures/golden/conversations.golden`.
//!
//! The input (`fixtures/golden/conversations-input.ndjson.gz`) is checked in, so the test depends
//! only on the converter and the Parquet writer, not on the simulator staying the same: 300
//! simulator conversations (seed 17, one day), sync-query pages and job-shaped pages with
//! participant attributes, with unknown fields, unknown enum values, structurally odd records
//! and start-time ties.
//!
//! The golden file holds, per table, the row count, a SHA-256 of the sorted canonical rows
//! (every column, including `extra` and the `conversation_date` partition, rendered as JSON;
//! row order and file layout do not matter) and a SHA-256 per column of its sorted values (so a
//! failure names the columns that changed), plus the first sorted rows as a readable sample.
//! Any changed value, missing or added row, column or table fails the test. On failure the
//! actual golden is written next to the test binary's temp dir and its path printed.
//!
//! Regenerate deliberately (only when a change of the tables' content is intended, and say so
//! in the commit):
//! `GP_GOLDEN_UPDATE=1 cargo test --test golden_convert` rewrites the golden from the current
//! converter; `GP_GOLDEN_UPDATE=input` also regenerates the input from the simulator first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMillisecondType};
use chrono::{NaiveDate, TimeZone, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use genesys_parquet::interval::Interval;
use genesys_parquet::simulator::{Dataset, SimConfig};

const DAY: &str = "2026-10-20";
const SAMPLE_ROWS: usize = 2;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

#[test]
fn conversation_tables_match_the_golden_outputs() {
    let update = std::env::var("GP_GOLDEN_UPDATE").ok();
    let input = fixtures().join("conversations-input.ndjson.gz");
    let golden = fixtures().join("conversations.golden");
    if update.as_deref() == Some("input") {
        write_input(&input);
    }
    let out = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_genesys-parquet"))
        .args(["convert", "--start", DAY, "--end", "2026-10-21", "--out"])
        .arg(out.path())
        .arg(&input)
        .output()
        .expect("run convert");
    assert!(
        o.status.success(),
        "convert failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let actual = render(&read_tables(out.path()));
    if update.is_some() {
        std::fs::write(&golden, &actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&golden).expect("read golden");
    if actual != expected {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conversations.golden.actual");
        std::fs::write(&path, &actual).expect("write actual");
        let diff: Vec<String> = diff_lines(&expected, &actual);
        panic!(
            "the conversation tables differ from the golden outputs (actual written to {}; \
             if the change is intended, regenerate with GP_GOLDEN_UPDATE=1):\n{}",
            path.display(),
            diff.join("\n")
        );
    }
}

/// Lines of the golden (not the samples) that are missing or new, first 40.
fn diff_lines(expected: &str, actual: &str) -> Vec<String> {
    let e: std::collections::BTreeSet<&str> = expected.lines().collect();
    let a: std::collections::BTreeSet<&str> = actual.lines().collect();
    let mut d: Vec<String> = e.difference(&a).map(|l| format!("- {l}")).collect();
    d.extend(a.difference(&e).map(|l| format!("+ {l}")));
    d.retain(|l| !l.contains("\"sample\""));
    d.truncate(40);
    d
}

/// Table name → canonical rows (JSON objects, column order of the file, then the partition).
fn read_tables(root: &Path) -> BTreeMap<String, Table> {
    let mut files = Vec::new();
    walk(root, &mut files);
    files.sort();
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for f in files {
        let date = f
            .components()
            .filter_map(|c| c.as_os_str().to_str())
            .find_map(|c| c.strip_prefix("conversation_date="))
            .unwrap_or_else(|| panic!("{}: no conversation_date= in the path", f.display()))
            .to_string();
        let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == "genesys_parquet.table"))
            .and_then(|k| k.value.clone())
            .unwrap_or_else(|| panic!("{}: no genesys_parquet.table", f.display()));
        let t = tables.entry(name).or_default();
        let schema = builder.schema().clone();
        let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        match &t.columns {
            None => t.columns = Some(cols.clone()),
            Some(c) => assert_eq!(c, &cols, "{}: columns differ between files", f.display()),
        }
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            for row in 0..batch.num_rows() {
                let mut values: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|a| value(a, row))
                    .collect::<Vec<_>>();
                values.push(serde_json::to_string(&date).unwrap());
                t.rows.push(values);
            }
        }
    }
    tables
}

#[derive(Default)]
struct Table {
    columns: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

/// One value as canonical JSON (timestamps as epoch milliseconds, floats in Rust's shortest
/// round-trip form).
fn value(a: &ArrayRef, i: usize) -> String {
    if a.is_null(i) {
        return "null".into();
    }
    match a.data_type() {
        DataType::Utf8 => serde_json::to_string(a.as_string::<i32>().value(i)).unwrap(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Float64 => format!("{:?}", a.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => a.as_boolean().value(i).to_string(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            format!(
                "\"{}ms\"",
                a.as_primitive::<TimestampMillisecondType>().value(i)
            )
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>().value(i);
            let items: Vec<String> = (0..l.len()).map(|j| value(&l, j)).collect();
            format!("[{}]", items.join(","))
        }
        other => panic!("no canonical form for {other}"),
    }
}

fn sha(lines: impl Iterator<Item = String>) -> String {
    let mut h = Sha256::new();
    for l in lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The golden text: per table its columns, row count and digests, then a sample.
fn render(tables: &BTreeMap<String, Table>) -> String {
    let mut s = String::from(
        "# Golden outputs of `convert` on conversations-input.ndjson.gz: see tests/golden_convert.rs.\n\
         # Regenerate only deliberately: GP_GOLDEN_UPDATE=1 cargo test --test golden_convert\n",
    );
    for (name, t) in tables {
        let mut cols = t.columns.clone().unwrap_or_default();
        cols.push("conversation_date".into());
        let mut rows: Vec<String> = t
            .rows
            .iter()
            .map(|r| {
                let fields: Vec<String> = cols
                    .iter()
                    .zip(r)
                    .map(|(c, v)| format!("{}:{v}", serde_json::to_string(c).unwrap()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            })
            .collect();
        rows.sort();
        let _ = writeln!(
            s,
            "table {name} rows {} sha256 {}",
            rows.len(),
            sha(rows.iter().cloned())
        );
        for (j, c) in cols.iter().enumerate() {
            let mut vals: Vec<String> = t.rows.iter().map(|r| r[j].clone()).collect();
            vals.sort();
            let nulls = vals.iter().filter(|v| *v == "null").count();
            let _ = writeln!(
                s,
                "  column {name}.{c} nulls {nulls} sha256 {}",
                sha(vals.into_iter())
            );
        }
        for r in rows.iter().take(SAMPLE_ROWS) {
            let _ = writeln!(s, "  {{\"sample\":{r}}}");
        }
    }
    s
}

/// The input: 300 conversations of one day from the simulator, in pages of 100; the second page
/// as a job result (participant attributes). Odd shapes on purpose: unknown fields and enum
/// values, structurally odd records, start-time ties.
fn write_input(path: &Path) {
    let date: NaiveDate = DAY.parse().unwrap();
    let cfg = SimConfig {
        seed: 17,
        per_day: 300,
        end_date: Some(date),
        fault_unknown_field: 0.1,
        fault_unknown_enum: 0.1,
        fault_odd_records: 0.05,
        ..SimConfig::default()
    };
    let mut data = cfg.data();
    data.ties = 0.03;
    let ds = Dataset::new(data);
    // A fixed "now" long after the day: every conversation has ended.
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let convs = ds.started_in(&Interval::day(date));
    let mut text = String::new();
    for (p, chunk) in convs.chunks(100).enumerate() {
        let recs: Vec<String> = chunk.iter().map(|c| ds.record(c, p == 1, now)).collect();
        let _ = writeln!(
            text,
            "{{\"conversations\":[{}],\"totalHits\":{}}}",
            recs.join(","),
            convs.len()
        );
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(text.as_bytes()).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
    // Read back: the fixture is what the simulator produced.
    let mut back = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut back)
        .unwrap();
    assert_eq!(back, text);
}

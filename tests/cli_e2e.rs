//! End to end, as a user runs it: the `genesys-parquet` binary's simulator on port 0, then
//! `extract` into a temporary folder, then DuckDB (an independent Parquet reader) reads every
//! table and the counts are compared with the simulator's truth.
//!
//! Needs `GP_PYTHON` (a Python with duckdb), which `.ci/run` sets.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use genesys_parquet::interval::Interval;
use genesys_parquet::simulator::{Dataset, SimConfig};

const BIN: &str = env!("CARGO_BIN_EXE_genesys-parquet");
const SEED: u64 = 11;
const PER_DAY: u32 = 300;
/// A fixed past day, so every simulated conversation has ended and the data is the same on
/// every run.
const END_DATE: &str = "2026-10-20";

/// A `genesys-parquet simulate` process, killed on drop.
struct Simulator {
    child: Child,
    url: String,
}

impl Simulator {
    fn start(extra: &[&str]) -> Simulator {
        let per_day = PER_DAY.to_string();
        let seed = SEED.to_string();
        let mut child = Command::new(BIN)
            .args(["simulate", "--listen", "127.0.0.1:0", "--seed", &seed])
            .args(["--per-day", &per_day, "--end-date", END_DATE])
            .args(["--job-ready-after-ms", "100"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn simulator");
        let stdout = child.stdout.take().expect("simulator stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read simulator's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from simulate: {line:?}"))
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Simulator { child, url }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn extract_cmd(sim: &Simulator, out: &Path, start: &str, end: &str, mode: &str) -> Command {
    let mut cmd = extract_all_cmd(sim, out, start, end, mode);
    // These tests are about the conversations; the default (every dataset) has its own test.
    cmd.args(["--datasets", "conversations"]);
    cmd
}

fn extract_all_cmd(sim: &Simulator, out: &Path, start: &str, end: &str, mode: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["extract", "--start", start, "--end", end, "--mode", mode])
        .arg("--out")
        .arg(out)
        .args(["--api-url", &sim.url, "--login-url", &sim.url])
        .env("GENESYS_CLIENT_ID", "demo")
        .env("GENESYS_CLIENT_SECRET", "demo")
        .env_remove("GENESYS_REGION")
        .env_remove("GP_OUT")
        .env_remove("GP_DATASETS")
        .env_remove("RUST_LOG");
    cmd
}

fn run_ok(mut cmd: Command) -> serde_json::Value {
    let out: Output = cmd.output().expect("run genesys-parquet");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstderr:\n{stderr}\nstdout:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("summary is not JSON: {e}"))
}

fn python() -> String {
    std::env::var("GP_PYTHON").unwrap_or_else(|_| {
        panic!("GP_PYTHON is not set: point it at a Python with duckdb (bash .ci/run does)")
    })
}

/// Runs a DuckDB script with `OUT` set to the output folder; returns its stdout as JSON.
fn duckdb(out: &Path, script: &str) -> serde_json::Value {
    let prelude = "import duckdb, json, os, sys\nOUT = os.environ['OUT']\ncon = duckdb.connect()\n";
    let o = Command::new(python())
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .env("OUT", out)
        .output()
        .expect("run python");
    assert!(
        o.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("python printed JSON")
}

/// Per table and day: rows; for conversations also distinct ids; plus the sorted ids per day.
const COUNTS: &str = r#"
res = {"tables": {}, "ids": {}}
for t in sorted(os.listdir(OUT)):
    if t.startswith('_'):
        continue
    rows = con.execute(f"SELECT conversation_date, count(*) FROM read_parquet('{OUT}/{t}/*/*.parquet', hive_partitioning=true) GROUP BY 1 ORDER BY 1").fetchall()
    res["tables"][t] = {str(d): n for d, n in rows}
for d, ids, n in con.execute(f"SELECT conversation_date, list(conversation_id ORDER BY conversation_id), count(DISTINCT conversation_id) FROM read_parquet('{OUT}/conversations/*/*.parquet', hive_partitioning=true) GROUP BY 1").fetchall():
    assert n == len(ids), f"duplicate conversation_id on {d}"
    res["ids"][str(d)] = ids
print(json.dumps(res))
"#;

/// A digest of every visible row of every table (order-independent), per table.
const DIGEST: &str = r#"
res = {}
for t in sorted(os.listdir(OUT)):
    if t.startswith('_'):
        continue
    rel = f"read_parquet('{OUT}/{t}/*/*.parquet', hive_partitioning=true)"
    res[t] = con.execute(f"SELECT count(*), md5(string_agg(r, '|' ORDER BY r)) FROM (SELECT CAST(x AS VARCHAR) AS r FROM {rel} x)").fetchone()[1]
print(json.dumps(res))
"#;

fn truth(day: NaiveDate) -> Vec<String> {
    let cfg = SimConfig {
        seed: SEED,
        per_day: PER_DAY,
        end_date: Some(END_DATE.parse().expect("date")),
        ..SimConfig::default()
    };
    let mut ids = Dataset::for_config(&cfg).conversation_ids_started_in(&Interval::day(day));
    ids.sort();
    ids
}

fn visible_files(out: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, acc: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, acc);
            } else {
                acc.insert(p.clone(), std::fs::read(&p).expect("read file"));
            }
        }
    }
    let mut acc = BTreeMap::new();
    for e in std::fs::read_dir(out).expect("read_dir").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with('_') || name == "_manifests" {
            walk(&e.path(), &mut acc);
        }
    }
    acc
}

/// By default `extract` writes every dataset: each day of the conversations and today's
/// snapshot of each reference table, each partition its own commit.
#[test]
fn extract_writes_every_dataset_by_default() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let summary = run_ok(extract_all_cmd(
        &sim,
        &out,
        "2026-10-18",
        "2026-10-19",
        "auto",
    ));
    let mut datasets: Vec<&str> = summary["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| d["dataset"].as_str().expect("dataset"))
        .collect();
    datasets.sort_unstable();
    let mut want: Vec<&str> = genesys_parquet::datasets::Dataset::all()
        .iter()
        .map(|d| d.name)
        .collect();
    want.sort_unstable();
    assert_eq!(datasets, want, "{summary}");
    let today = chrono::Utc::now().date_naive();
    for t in ["users", "queues", "wrapup_codes", "presence_definitions"] {
        let folder = out.join(t);
        let snapshots: Vec<String> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        // Around midnight the run's date may be yesterday's by the time this reads the clock.
        assert_eq!(snapshots.len(), 1, "{t}: {snapshots:?}");
        let d: NaiveDate = snapshots[0]
            .strip_prefix("snapshot_date=")
            .expect("snapshot folder")
            .parse()
            .expect("date");
        assert!(
            d == today || d == today - chrono::Duration::days(1),
            "{t}: {d}"
        );
    }
    assert!(out
        .join("conversations/conversation_date=2026-10-18")
        .exists());
}

#[test]
fn extract_two_days_matches_truth_and_reruns_are_idempotent() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let summary = run_ok(extract_cmd(&sim, &out, "2026-10-18", "2026-10-20", "auto"));

    // The summary names both days, in jobs mode (the days are long past availability).
    let days = summary["days"].as_array().expect("days");
    assert_eq!(days.len(), 2);
    let d1: NaiveDate = "2026-10-18".parse().expect("date");
    let d2: NaiveDate = "2026-10-19".parse().expect("date");
    let t1 = truth(d1);
    let t2 = truth(d2);
    assert!(
        t1.len() > 100 && t2.len() > 100,
        "{} {}",
        t1.len(),
        t2.len()
    );
    for (day, t) in days.iter().zip([&t1, &t2]) {
        assert_eq!(day["status"], "ok", "{day}");
        assert_eq!(day["mode"], "jobs", "{day}");
        assert_eq!(day["conversations"].as_u64(), Some(t.len() as u64), "{day}");
        assert!(
            day["requests"]["requests"].as_u64().unwrap_or(0) >= 3,
            "{day}"
        );
    }

    let counts = duckdb(&out, COUNTS);
    assert_eq!(counts["ids"][d1.to_string()], serde_json::json!(t1));
    assert_eq!(counts["ids"][d2.to_string()], serde_json::json!(t2));
    let tables = counts["tables"].as_object().expect("tables");
    for t in [
        "conversations",
        "participants",
        "sessions",
        "segments",
        "session_metrics",
    ] {
        let per_day = tables.get(t).unwrap_or_else(|| panic!("no table {t}"));
        for d in [d1, d2] {
            let n = per_day[d.to_string()].as_u64().unwrap_or(0);
            assert!(n >= t1.len().min(t2.len()) as u64, "{t} {d}: {n} rows");
        }
        // Rows per table and day equal what the summary reported.
        for day in days {
            let date = day["date"].as_str().expect("date");
            assert_eq!(per_day[date], day["rows"][t], "{t} {date}");
        }
    }

    // Re-running a day changes nothing visible.
    let before = duckdb(&out, DIGEST);
    run_ok(extract_cmd(&sim, &out, "2026-10-19", "2026-10-20", "auto"));
    assert_eq!(duckdb(&out, DIGEST), before);

    // The synchronous query path yields the same conversations as the jobs path.
    let out_q = dir.path().join("out-query");
    let s = run_ok(extract_cmd(
        &sim,
        &out_q,
        "2026-10-19",
        "2026-10-20",
        "query",
    ));
    assert_eq!(s["days"][0]["mode"], "query");
    let counts_q = duckdb(&out_q, COUNTS);
    assert_eq!(counts_q["ids"][d2.to_string()], serde_json::json!(t2));
}

#[test]
fn a_run_killed_mid_day_leaves_the_previous_partition_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    {
        let sim = Simulator::start(&[]);
        run_ok(extract_cmd(&sim, &out, "2026-10-19", "2026-10-20", "query"));
    }
    let before = visible_files(&out);
    assert!(!before.is_empty());

    // A slow server, so the second run is surely mid-day when it is killed.
    let slow = Simulator::start(&["--latency-ms", "150"]);
    let mut child = extract_cmd(&slow, &out, "2026-10-19", "2026-10-20", "query")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn extract");
    // Wait until the run has written something of its own (its staging folder), then kill it.
    let staging = out.join("_staging");
    let t0 = Instant::now();
    while !has_files(&staging) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "extract wrote nothing"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "extract ended too early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");

    assert_eq!(
        visible_files(&out),
        before,
        "the killed run changed visible data"
    );
    let counts = duckdb(&out, COUNTS);
    assert_eq!(
        counts["ids"]["2026-10-19"],
        serde_json::json!(truth("2026-10-19".parse().expect("date")))
    );

    // The next run takes over the dead run's lease and clears its leftovers.
    let sim = Simulator::start(&[]);
    run_ok(extract_cmd(&sim, &out, "2026-10-19", "2026-10-20", "query"));
    assert!(!has_files(&staging), "leftovers of the killed run remain");
}

fn has_files(dir: &Path) -> bool {
    fn any(dir: &Path) -> bool {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten().any(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        any(&p)
                    } else {
                        true
                    }
                })
            })
            .unwrap_or(false)
    }
    any(dir)
}

#[test]
fn bad_usage_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[&str], &str)] = &[
        (&["--start", "2026-10-20", "--end", "2026-10-18"], "end"),
        (
            &["--start", "2026-10-18T05:00:00Z", "--end", "2026-10-19"],
            "--partial-days",
        ),
        (&["--start", "2999-01-01", "--end", "2999-01-02"], "future"),
        (&["--start", "yesterday", "--end", "2026-10-19"], "--start"),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN)
            .arg("extract")
            .args(*args)
            .arg("--out")
            .arg(dir.path())
            .args([
                "--api-url",
                "http://127.0.0.1:9",
                "--login-url",
                "http://127.0.0.1:9",
            ])
            .env("GENESYS_CLIENT_ID", "x")
            .env("GENESYS_CLIENT_SECRET", "very-secret-value")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("very-secret-value"));
    }
}

#[test]
fn wrong_credentials_fail_without_showing_the_secret() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = extract_cmd(&sim, dir.path(), "2026-10-19", "2026-10-20", "auto")
        .env("GENESYS_CLIENT_SECRET", "not-the-secret-123")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("authentication failed"), "{all}");
    assert!(!all.contains("not-the-secret-123"), "{all}");
}

#[test]
fn unknown_fields_and_enum_values_are_kept_not_dropped() {
    let sim = Simulator::start(&[
        "--fault-unknown-field",
        "0.3",
        "--fault-unknown-enum",
        "0.3",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let summary = run_ok(extract_cmd(&sim, &out, "2026-10-19", "2026-10-20", "jobs"));
    assert_eq!(summary["days"][0]["status"], "ok");
    let v = duckdb(
        &out,
        r#"
rel = lambda t: f"read_parquet('{OUT}/{t}/*/*.parquet', hive_partitioning=true)"
print(json.dumps({
  "extra": con.execute(f"SELECT count(*) FROM {rel('conversations')} WHERE json_extract(extra, '$.sentimentScore2027.label') = '\"positive\"'").fetchone()[0],
  "hologram": con.execute(f"SELECT count(*) FROM {rel('sessions')} WHERE media_type = 'hologram'").fetchone()[0],
  "teleporting": con.execute(f"SELECT count(*) FROM {rel('segments')} WHERE segment_type = 'teleporting'").fetchone()[0],
  "n": con.execute(f"SELECT count(*) FROM {rel('conversations')}").fetchone()[0],
}))
"#,
    );
    let n = v["n"].as_u64().expect("n");
    assert_eq!(n, truth("2026-10-19".parse().expect("date")).len() as u64);
    for k in ["extra", "hologram", "teleporting"] {
        let c = v[k].as_u64().expect(k);
        assert!(c > n / 10 && c < n, "{k}: {c} of {n}");
    }
}

/// The simulator's data set with extra flags (as `Simulator::start(extra)` serves it).
fn dataset_with(odd_records: f64) -> Dataset {
    Dataset::for_config(&SimConfig {
        seed: SEED,
        per_day: PER_DAY,
        end_date: Some(END_DATE.parse().expect("date")),
        fault_odd_records: odd_records,
        ..SimConfig::default()
    })
}

#[test]
fn structurally_odd_records_land_in_extra_counted_and_never_echoed() {
    let sim = Simulator::start(&["--fault-odd-records", "0.2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let day: NaiveDate = "2026-10-19".parse().expect("date");
    let mut cmd = extract_cmd(&sim, &out, "2026-10-19", "2026-10-20", "jobs");
    // `--raw` (opt-in): the DuckDB check below finds each record's last participant through it.
    cmd.args(["-vv", "--raw"]);
    let o = cmd.output().expect("run");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stderr}\n{stdout}");
    // Odd values are record values: never in a log line or the summary.
    for text in [&stdout, &stderr] {
        assert!(!text.contains("555 0100"), "a record value was echoed");
    }
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary");

    let ds = dataset_with(0.2);
    let now = chrono::Utc::now();
    let parts: Vec<u64> = ds
        .started_in(&Interval::day(day))
        .iter()
        .map(|c| ds.odd_parts(c, true, now))
        .collect();
    let n_odd = parts.iter().filter(|p| **p > 0).count() as u64;
    let two_participants = parts.iter().filter(|p| **p == 4).count() as u64;
    assert!(n_odd > 20, "{n_odd} odd records");
    let d = &summary["days"][0];
    assert_eq!(d["status"], "ok", "{d}");
    assert_eq!(d["conversations"].as_u64(), Some(parts.len() as u64));
    assert_eq!(
        d["type_mismatches"].as_u64(),
        Some(parts.iter().sum::<u64>())
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("_manifests/conversations/conversation_date=2026-10-19.json"))
            .expect("manifest"),
    )
    .expect("manifest JSON");
    assert_eq!(manifest["type_mismatches"], d["type_mismatches"]);

    let v = duckdb(
        &out,
        &format!(
            r#"
rel = lambda t: f"read_parquet('{{OUT}}/{{t}}/*/*.parquet', hive_partitioning=true)"
q = lambda s: con.execute(s).fetchone()[0]
print(json.dumps({{
  "ids": q(f"SELECT list(conversation_id ORDER BY conversation_id) FROM {{rel('conversations')}}"),
  "null_element": q(f"SELECT count(*) FROM {{rel('conversations')}} WHERE json_type(json_extract(extra, '$.\"participants[' || (json_array_length(json_extract(raw, '$.participants')) - 1) || ']\"')) = 'NULL'"),
  "metrics_string": q(f"SELECT count(*) FROM {{rel('sessions')}} WHERE json_extract_string(extra, '$.metrics') = '{marker}'"),
  "flow_list": q(f"SELECT count(*) FROM {{rel('sessions')}} WHERE json_type(json_extract(extra, '$.flow')) = 'ARRAY'"),
  "sessions_object": q(f"SELECT count(*) FROM {{rel('participants')}} WHERE json_type(json_extract(extra, '$.sessions')) = 'OBJECT'"),
}}))
"#,
            marker = genesys_parquet::simulator::ODD_MARKER
        ),
    );
    assert_eq!(v["ids"], serde_json::json!(truth(day)));
    assert_eq!(v["null_element"].as_u64(), Some(n_odd), "{v}");
    assert_eq!(v["metrics_string"].as_u64(), Some(n_odd), "{v}");
    assert_eq!(v["flow_list"].as_u64(), Some(n_odd), "{v}");
    assert_eq!(v["sessions_object"].as_u64(), Some(two_participants), "{v}");
}

fn convert_cmd(out: &Path, args: &[&str], files: &[&Path]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("convert")
        .arg("--out")
        .arg(out)
        .args(args)
        .args(files)
        .env_remove("GP_OUT")
        .env_remove("RUST_LOG");
    cmd
}

/// Visible files (tables and manifest) of one day.
fn day_files(out: &Path, day: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    visible_files(out)
        .into_iter()
        .filter(|(p, _)| {
            p.to_string_lossy()
                .contains(&format!("conversation_date={day}"))
        })
        .collect()
}

/// Pages as an analytics job returns them for `day`: every conversation active in the day, so
/// also conversations that started the day before.
fn write_job_pages(path: &Path, day: NaiveDate) -> (u64, u64) {
    use std::io::Write;
    let ds = dataset_with(0.0);
    let now = chrono::Utc::now();
    let active = ds.active_in(&Interval::day(day), now);
    let mut f = std::fs::File::create(path).expect("create");
    for chunk in active.chunks(50) {
        let recs: Vec<String> = chunk.iter().map(|c| ds.record(c, true, now)).collect();
        writeln!(
            f,
            r#"{{"conversations":[{}],"cursor":"c"}}"#,
            recs.join(",")
        )
        .expect("write");
    }
    let before = active
        .iter()
        .filter(|c| c.start_ms < Interval::day(day).start.timestamp_millis())
        .count() as u64;
    (active.len() as u64, before)
}

#[test]
fn convert_of_saved_job_pages_leaves_neighbouring_days_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A day whose job pages hold conversations that started the day before (they cross
    // midnight; at 300 a day, not every day has one).
    let pages = dir.path().join("job-pages.ndjson");
    let end: NaiveDate = END_DATE.parse().expect("date");
    let (d1, records, from_day_before) = (1..20)
        .map(|back| end - chrono::Duration::days(back))
        .find_map(|d| {
            let (records, before) = write_job_pages(&pages, d);
            (before > 0).then_some((d, records, before))
        })
        .expect("no day with conversations crossing midnight");
    let d0 = d1 - chrono::Duration::days(1);
    let (s0, s1, s2) = (
        d0.to_string(),
        d1.to_string(),
        (d1 + chrono::Duration::days(1)).to_string(),
    );
    let sim = Simulator::start(&[]);
    let out = dir.path().join("out");
    run_ok(extract_cmd(&sim, &out, &s0, &s2, "query"));
    let neighbour = day_files(&out, &s0);
    assert!(!neighbour.is_empty());

    // Without a declared coverage: refused, saying how to give one; nothing changes.
    let before = visible_files(&out);
    let o = convert_cmd(&out, &[], &[&pages]).output().expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("job-pages.ndjson")
            && stderr.contains("--start")
            && stderr.contains("--end"),
        "{stderr}"
    );
    assert_eq!(visible_files(&out), before);

    // With it: only the covered day is replaced; the rest is dropped and counted.
    let s = run_ok(convert_cmd(
        &out,
        &["--start", &s1, "--end", &s2],
        &[&pages],
    ));
    let days = s["days"].as_array().expect("days");
    assert_eq!(days.len(), 1, "{s}");
    assert_eq!(days[0]["date"], s1.as_str());
    assert_eq!(days[0]["status"], "ok");
    assert_eq!(
        days[0]["conversations"].as_u64(),
        Some(records - from_day_before)
    );
    assert_eq!(
        s["convert"]["outside_coverage"].as_u64(),
        Some(from_day_before),
        "{s}"
    );
    assert_eq!(
        day_files(&out, &s0),
        neighbour,
        "the day before was touched"
    );
    let counts = duckdb(&out, COUNTS);
    assert_eq!(counts["ids"][d0.to_string()], serde_json::json!(truth(d0)));
    assert_eq!(counts["ids"][d1.to_string()], serde_json::json!(truth(d1)));
}

fn gunzip(path: &Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).expect("open"))
        .read_to_string(&mut text)
        .expect("gunzip");
    text
}

/// NDJSON pages without their `_archive` stamps: pages as saved by hand.
fn without_stamps(ndjson: &str) -> String {
    let pages: Vec<String> = ndjson
        .lines()
        .map(|l| {
            let mut page: serde_json::Value = serde_json::from_str(l).expect("page");
            page.as_object_mut().expect("page").remove("_archive");
            page.to_string()
        })
        .collect();
    pages.join("\n")
}

#[test]
fn convert_rebuilds_days_from_extract_archives_and_the_newest_copy_wins() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut cmd = extract_cmd(&sim, &out, "2026-10-18", "2026-10-20", "query");
    cmd.arg("--archive-raw");
    run_ok(cmd);
    // `_raw/conversation_date=D/run=R/pages-N.ndjson.gz`
    let mut archives: Vec<PathBuf> = std::fs::read_dir(out.join("_raw"))
        .expect("_raw")
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).expect("day").flatten())
        .flat_map(|r| std::fs::read_dir(r.path()).expect("run").flatten())
        .map(|f| f.path())
        .filter(|p| p.to_string_lossy().ends_with(".ndjson.gz"))
        .collect();
    archives.sort();
    assert!(archives.len() >= 2, "{archives:?}");
    let extracted = duckdb(&out, DIGEST);

    // An older copy of the first archive, extracted an hour earlier, with one field changed in
    // every record.
    let older = dir.path().join("older.ndjson");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&older).expect("create");
        for line in gunzip(&archives[0]).lines() {
            let mut page: serde_json::Value = serde_json::from_str(line).expect("page");
            let stamp = &mut page["_archive"]["extractedAt"];
            let at: chrono::DateTime<chrono::Utc> =
                stamp.as_str().expect("extractedAt").parse().expect("time");
            *stamp = serde_json::json!((at - chrono::Duration::hours(1))
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string());
            for rec in page["conversations"].as_array_mut().expect("records") {
                rec["originatingDirection"] = serde_json::json!("stale");
            }
            writeln!(f, "{page}").expect("write");
        }
    }

    // No --start/--end: the archives say what they cover. The newer copy wins whatever the
    // order on the command line.
    for (name, files) in [
        ("older-first", {
            let mut v = vec![older.clone()];
            v.extend(archives.iter().cloned());
            v
        }),
        ("older-last", {
            let mut v = archives.clone();
            v.push(older.clone());
            v
        }),
    ] {
        let out2 = dir.path().join(name);
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let s = run_ok(convert_cmd(&out2, &[], &refs));
        assert_eq!(s["convert"]["coverage"], "archive", "{s}");
        assert_eq!(
            s["convert"]["covered_days"],
            serde_json::json!(["2026-10-18", "2026-10-19"])
        );
        assert!(
            s["convert"]["duplicates"].as_u64().unwrap_or(0) > 100,
            "{s}"
        );
        assert_eq!(duckdb(&out2, DIGEST), extracted, "{name}");
    }

    // Plain files carry no extraction time: the later file on the command line wins.
    let plain = dir.path().join("newer-plain.ndjson");
    std::fs::write(&plain, without_stamps(&gunzip(&archives[0]))).expect("write");
    let older_plain = dir.path().join("older-plain.ndjson");
    let older_text = std::fs::read_to_string(&older).expect("read");
    std::fs::write(&older_plain, without_stamps(&older_text)).expect("write");
    let day = archives[0]
        .to_string_lossy()
        .split("conversation_date=")
        .nth(1)
        .expect("date")[..10]
        .to_string();
    let next = (day.parse::<NaiveDate>().expect("date") + chrono::Duration::days(1)).to_string();
    let range = ["--start", day.as_str(), "--end", next.as_str()];
    let stale = |out: &Path| {
        duckdb(
            out,
            "print(json.dumps(con.execute(f\"SELECT count(*) FILTER (WHERE originating_direction = 'stale'), count(*) FROM read_parquet('{OUT}/conversations/*/*.parquet')\").fetchone()))",
        )
    };
    let o = dir.path().join("plain-newer-last");
    let s = run_ok(convert_cmd(&o, &range, &[&older_plain, &plain]));
    // Read once, met a conversation twice, read again with a plan: every copy counted.
    assert!(
        s["convert"]["duplicates"].as_u64().unwrap_or(0) > 100,
        "{s}"
    );
    let v = stale(&o);
    assert_eq!(v[0], 0, "{v}");
    assert!(v[1].as_u64().unwrap_or(0) > 100, "{v}");
    let o = dir.path().join("plain-older-last");
    run_ok(convert_cmd(&o, &range, &[&plain, &older_plain]));
    let v = stale(&o);
    assert_eq!(v[0], v[1], "{v}");
}

/// `demo` writes every dataset and prints a query that runs as pasted: handled conversations
/// per queue name and wrap-up code name, names from the reference tables.
#[test]
fn the_demo_prints_a_ready_query_joining_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("demo");
    let o = Command::new(BIN)
        .args(["demo", "--per-day", "40", "--seed", "5", "--out"])
        .arg(&out)
        .output()
        .expect("run demo");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "demo failed:\n{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary JSON");
    assert_eq!(summary["ok"], true);
    // Every registered dataset wrote something.
    let mut written: Vec<&str> = summary["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| d["dataset"].as_str().expect("dataset"))
        .collect();
    written.dedup();
    for d in genesys_parquet::datasets::Dataset::all() {
        assert!(written.contains(&d.name), "{}: {written:?}", d.name);
    }
    // The printed DuckDB script, as a user pastes it.
    let script = stderr
        .split_once("python3 - <<'EOF'\n")
        .and_then(|(_, rest)| rest.split_once("\n  EOF"))
        .map(|(s, _)| s)
        .unwrap_or_else(|| panic!("no DuckDB script in the demo's output:\n{stderr}"));
    let script: String = script
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let run = |script: &str| -> Vec<u8> {
        let q = Command::new(python())
            .arg("-c")
            .arg(script)
            .output()
            .expect("run python");
        assert!(
            q.status.success(),
            "the printed query failed:\n{}\n{script}",
            String::from_utf8_lossy(&q.stderr)
        );
        q.stdout
    };
    // As pasted: DuckDB prints a table with the names.
    let printed = String::from_utf8(run(&script)).expect("utf-8");
    use genesys_parquet::simulator::reference as universe;
    assert!(
        universe::WRAPUPS.iter().any(|(_, n)| printed.contains(n)),
        "{printed}"
    );
    // The same query's rows: every code and (but the deleted queue) every queue by its name.
    let json_script = format!(
        "import json\n{}",
        script
            .replacen("print(duckdb.sql(", "print(json.dumps(duckdb.sql(", 1)
            .replacen("\"\"\"))", "\"\"\").fetchall()))", 1)
    );
    let rows: Vec<(String, String, u64)> =
        serde_json::from_slice(&run(&json_script)).expect("rows as JSON");
    assert!(!rows.is_empty(), "{script}");
    let queue_names: Vec<&str> = universe::QUEUES.iter().map(|(_, n)| *n).collect();
    let code_names: Vec<&str> = universe::WRAPUPS.iter().map(|(_, n)| *n).collect();
    for (queue, code, n) in &rows {
        assert!(*n > 0);
        assert!(code_names.contains(&code.as_str()), "code {code}: {rows:?}");
        assert!(
            queue_names.contains(&queue.as_str()) || queue == universe::DELETED_QUEUE,
            "queue {queue}: {rows:?}"
        );
    }
    assert!(rows
        .iter()
        .any(|(q, _, _)| queue_names.contains(&q.as_str())));
}

/// The command line's allocator runs with the settings `src/main.rs` gives it (jemalloc reports
/// its options at exit when asked, and names a setting it cannot parse).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn the_allocator_runs_with_its_settings() {
    let out = Command::new(BIN)
        .arg("--version")
        .env("MALLOC_CONF", "stats_print:true")
        .output()
        .expect("run");
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr);
    assert!(!stats.contains("<jemalloc>"), "{stats}");
    for want in [
        "opt.narenas: 1\n",
        "opt.thp: \"always\"",
        "opt.metadata_thp: \"always\"",
        "opt.dirty_decay_ms: -1 ",
        "opt.muzzy_decay_ms: -1 ",
    ] {
        assert!(stats.contains(want), "{want} not in jemalloc's options");
    }
}

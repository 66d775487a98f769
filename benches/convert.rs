//! Conversion throughput and memory: N simulator conversations as NDJSON query pages → all
//! tables as zstd Parquet, by `genesys-parquet convert` (a child process, so its peak RSS is its
//! own), against DuckDB doing the same flattening of the same file in the same run.
//!
//! `cargo bench --bench convert` — env `GP_BENCH_CONVERSATIONS` (default 50000, several values
//! comma-separated, e.g. `50000,500000`), `GP_PYTHON` (python with duckdb; without it only our
//! side runs), `GP_BENCH_DUCKDB_MAX` (largest input DuckDB is run on, default 50000: it needs
//! about 1.3 GB per 50k conversations), `GP_BENCH_KEEP_INPUT=DIR` (keep the generated NDJSON
//! there, to profile `convert` on it by hand).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use genesys_parquet::interval::Interval;
use genesys_parquet::simulator::{Dataset, SimConfig};

fn main() {
    let sizes: Vec<u64> = std::env::var("GP_BENCH_CONVERSATIONS")
        .unwrap_or_else(|_| "50000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let duckdb_max: u64 = std::env::var("GP_BENCH_DUCKDB_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let bin = env!("CARGO_BIN_EXE_genesys-parquet");
    let dir = tempfile::tempdir().expect("tempdir");
    println!("conversations  input_MB  ours_s  ours_conv/s  ours_MB/s  ours_peak_MiB  out_MB  duckdb_s  duckdb_peak_MiB  speedup");
    for n in sizes {
        let input = dir.path().join(format!("pages-{n}.ndjson"));
        let bytes = generate(n, &input);
        let out = dir.path().join(format!("out-{n}"));
        let t0b = Instant::now();
        let (ok, peak_kib) = run_measured(
            bin,
            &[
                "convert",
                "--start",
                "2026-10-20",
                "--end",
                "2026-10-21",
                "--out",
                out.to_str().expect("utf8"),
                input.to_str().expect("utf8"),
            ],
        );
        let ours = t0b.elapsed().as_secs_f64();
        assert!(ok, "convert failed");
        let out_bytes = dir_size(&out);
        let mb = bytes as f64 / 1e6;
        let (duck_s, duck_peak) = if n <= duckdb_max {
            duckdb(&input, &dir.path().join(format!("duck-{n}")))
        } else {
            (f64::NAN, f64::NAN)
        };
        println!(
            "{n:>13} {mb:>9.1} {ours:>7.2} {:>12.0} {:>10.1} {:>14.1} {:>7.1} {duck_s:>9.2} {duck_peak:>16.1} {:>8.2}",
            n as f64 / ours,
            mb / ours,
            peak_kib as f64 / 1024.0,
            out_bytes as f64 / 1e6,
            duck_s / ours,
        );
        match std::env::var_os("GP_BENCH_KEEP_INPUT") {
            // For profiling `convert` by hand on the same input.
            Some(keep) => {
                std::fs::create_dir_all(&keep).expect("mkdir");
                let to = Path::new(&keep).join(input.file_name().expect("name"));
                std::fs::rename(&input, &to)
                    .or_else(|_| std::fs::copy(&input, &to).map(|_| ()))
                    .expect("keep input");
            }
            None => {
                let _ = std::fs::remove_file(&input);
            }
        }
    }
}

fn generate(n: u64, path: &Path) -> u64 {
    // One simulated day holding all n conversations: pages of 100, as the query returns them.
    let cfg = SimConfig {
        seed: 2026,
        per_day: n as u32,
        end_date: Some("2026-10-20".parse().expect("date")),
        ..SimConfig::default()
    };
    let ds = Dataset::for_config(&cfg);
    let day = Interval::day("2026-10-20".parse().expect("date"));
    let f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    ds.write_ndjson_pages(&day, 100, f).expect("write pages")
}

/// Runs a command and returns (success, peak RSS in KiB) from its rusage.
fn run_measured(bin: &str, args: &[&str]) -> (bool, u64) {
    let script = r#"
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"#;
    let python = std::env::var("GP_PYTHON").unwrap_or_else(|_| "python3".into());
    let o = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(bin)
        .args(args)
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&o.stdout);
    let mut it = text.split_whitespace();
    let code: i32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(-1);
    let peak: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (code == 0, peak)
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            total += if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}

/// DuckDB's fastest path: native nested types (`read_json`, full sampling), `unnest` of the
/// lists, `COPY … (FORMAT parquet, COMPRESSION zstd)` for conversations, participants, sessions,
/// segments and session metrics. Returns (seconds, peak MiB), or NaN without GP_PYTHON.
fn duckdb(input: &Path, out: &Path) -> (f64, f64) {
    let Ok(python) = std::env::var("GP_PYTHON") else {
        eprintln!("GP_PYTHON not set: DuckDB reference skipped");
        return (f64::NAN, f64::NAN);
    };
    std::fs::create_dir_all(out).expect("mkdir");
    let script = r#"
import duckdb, resource, sys, time
src, out = sys.argv[1], sys.argv[2]
t0 = time.time()
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
print(time.time() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;
    let o = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(input)
        .arg(out)
        .output()
        .expect("python");
    if !o.status.success() {
        eprintln!("duckdb failed: {}", String::from_utf8_lossy(&o.stderr));
        return (f64::NAN, f64::NAN);
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let mut it = text.split_whitespace();
    let secs: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    let kib: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    if secs.is_nan() || kib.is_nan() {
        eprintln!(
            "duckdb printed no timing: stdout {text:?}, stderr {:?}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    (secs, kib / 1024.0)
}

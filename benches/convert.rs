//! Conversion throughput and memory, in one run, on the same generated input: N simulator
//! conversations as async jobs return them (with participant attributes; ≈6.2 KB each, real
//! ones run 6–7 KB) as NDJSON pages, converted by
//! - `genesys-parquet convert` (all fifteen tables, no `raw` column),
//! - a pyarrow streaming reference (`reference_pyarrow.py`: pinned schema, `open_json`,
//!   columnar flattening into five tables),
//! - DuckDB (`reference_duckdb.py`: `read_json` + `unnest` into the same five tables; only up to
//!   `GP_BENCH_DUCKDB_MAX` conversations, it needs about 1.3 GB per 50k).
//!
//! Each runs as a child process under a small Python wrapper that reports the child's wall
//! time, CPU seconds (user + sys, all threads) and peak RSS from its rusage. Printed per tool:
//! wall, CPU, the system part of it, peak RSS, input MB/s (wall), and the references' wall and
//! CPU over ours. The system part is mostly the kernel copying the input out of and the output
//! into the page cache; on a VM it varies from run to run with the host (fresh page-cache pages
//! cost a first touch), so it tells a slower machine from a slower tool. Ours and pyarrow
//! take turns going first from one run to the next.
//!
//! `cargo bench --bench convert` — env `GP_BENCH_CONVERSATIONS` (default `50000`; the full
//! comparison is `50000,500000`, comma-separated), `GP_PYTHON` (python with pyarrow and duckdb;
//! required, see `.ci/run`), `GP_BENCH_DUCKDB_MAX` (default 50000), `GP_BENCH_RUNS` (repetitions
//! of the whole comparison, default 1), `GP_BENCH_KEEP_INPUT=DIR` (generate the inputs there and
//! reuse them in later runs: the generator is deterministic; also handy to profile `convert` by
//! hand).

use std::path::{Path, PathBuf};
use std::process::Command;

use genesys_parquet::interval::Interval;
use genesys_parquet::simulator::{Dataset, SimConfig};

struct Measured {
    wall: f64,
    /// User + system seconds.
    cpu: f64,
    sys: f64,
    peak_mib: f64,
}

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
    let runs: usize = std::env::var("GP_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let python = std::env::var("GP_PYTHON")
        .expect("GP_PYTHON: a python with pyarrow and duckdb (see .ci/run) runs the references");
    let benches = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    let bin = env!("CARGO_BIN_EXE_genesys-parquet");
    let tmp = tempfile::tempdir().expect("tempdir");
    let keep = std::env::var_os("GP_BENCH_KEEP_INPUT").map(PathBuf::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "cores {}, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for run in 1..=runs {
        for &n in &sizes {
            let input = match &keep {
                Some(dir) => dir.join(format!("pages-{n}.ndjson")),
                None => tmp.path().join(format!("pages-{n}.ndjson")),
            };
            if !input.exists() {
                std::fs::create_dir_all(input.parent().expect("parent")).expect("mkdir");
                generate(n, &input);
            }
            let mb = std::fs::metadata(&input).expect("input").len() as f64 / 1e6;
            let input_s = input.to_str().expect("utf8");
            let out = |name: &str| {
                let d = tmp.path().join(format!("{name}-{n}-{run}"));
                let _ = std::fs::remove_dir_all(&d);
                d.to_str().expect("utf8").to_string()
            };
            println!(
                "\nrun {run}/{runs}: {n} conversations, {mb:.1} MB of NDJSON ({:.1} KB each)",
                mb * 1e3 / n as f64
            );
            println!(
                "{:<28} {:>8} {:>8} {:>8} {:>9} {:>8} {:>11} {:>10}",
                "", "wall_s", "cpu_s", "sys_s", "peak_MiB", "MB/s", "wall/ours", "cpu/ours"
            );
            // Ours and pyarrow take turns going first: whichever runs first after the previous
            // size (or DuckDB) paid more system time in earlier runs (fresh pages, a colder
            // cache), and the ratio is what is read.
            let ours_out = out("ours");
            let out_pyarrow = out("pyarrow");
            let ours_args = [
                bin,
                "convert",
                "--start",
                "2026-10-20",
                "--end",
                "2026-10-21",
                "--out",
                &ours_out,
                input_s,
            ];
            let script = benches.join("reference_pyarrow.py");
            let pyarrow_args = [
                &python,
                script.to_str().expect("utf8"),
                input_s,
                &out_pyarrow,
            ];
            let run_ours = || measure(&python, &ours_args).expect("genesys-parquet convert failed");
            let (ours, pyarrow) = if run % 2 == 1 {
                let ours = run_ours();
                (ours, measure(&python, &pyarrow_args))
            } else {
                let pyarrow = measure(&python, &pyarrow_args);
                (run_ours(), pyarrow)
            };
            report("genesys-parquet convert", &ours, &ours, mb);
            match pyarrow {
                Some(m) => report("pyarrow 5 tables", &m, &ours, mb),
                None => println!("pyarrow reference failed"),
            }
            if n <= duckdb_max {
                let script = benches.join("reference_duckdb.py");
                match measure(
                    &python,
                    &[
                        &python,
                        script.to_str().expect("utf8"),
                        input_s,
                        &out("duckdb"),
                    ],
                ) {
                    Some(m) => report("duckdb 5 tables", &m, &ours, mb),
                    None => println!("duckdb reference failed"),
                }
            }
            println!(
                "output of ours: {:.1} MB in {} files; of pyarrow: {:.1} MB in {} files",
                dir_size(Path::new(&ours_out)) as f64 / 1e6,
                count_files(Path::new(&ours_out)),
                dir_size(Path::new(&out_pyarrow)) as f64 / 1e6,
                count_files(Path::new(&out_pyarrow))
            );
            for name in ["ours", "pyarrow", "duckdb"] {
                let _ = std::fs::remove_dir_all(out(name));
            }
            if keep.is_none() && run == runs {
                let _ = std::fs::remove_file(&input);
            }
        }
    }
}

fn report(name: &str, m: &Measured, ours: &Measured, mb: f64) {
    println!(
        "{name:<28} {:>8.2} {:>8.2} {:>8.2} {:>9.1} {:>8.1} {:>10.2}x {:>9.2}x",
        m.wall,
        m.cpu,
        m.sys,
        m.peak_mib,
        mb / m.wall,
        m.wall / ours.wall,
        m.cpu / ours.cpu
    );
}

fn generate(n: u64, path: &Path) -> u64 {
    // One simulated day holding all n conversations: pages of 100, the records as async jobs
    // return them (with participant attributes).
    let cfg = SimConfig {
        seed: 2026,
        per_day: n as u32,
        end_date: Some("2026-10-20".parse().expect("date")),
        ..SimConfig::default()
    };
    let ds = Dataset::for_config(&cfg);
    let day = Interval::day("2026-10-20".parse().expect("date"));
    let f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    ds.write_ndjson_pages(&day, 100, true, f)
        .expect("write pages")
}

/// Runs `args` as a child of a Python wrapper; its wall time, CPU seconds (and the system part)
/// and peak RSS, or None when it failed (its stderr is shown).
fn measure(python: &str, args: &[&str]) -> Option<Measured> {
    let script = r#"
import resource, subprocess, sys, time
t0 = time.perf_counter()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
wall = time.perf_counter() - t0
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.returncode, wall, u.ru_utime + u.ru_stime, u.ru_stime, u.ru_maxrss)
"#;
    let o = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&o.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if v.len() != 5 || v[0] != 0.0 {
        eprintln!(
            "{:?} failed: {text} {}",
            args.first(),
            String::from_utf8_lossy(&o.stderr)
        );
        return None;
    }
    Some(Measured {
        wall: v[1],
        cpu: v[2],
        sys: v[3],
        peak_mib: v[4] / 1024.0,
    })
}

fn dir_size(p: &Path) -> u64 {
    walk(p)
        .iter()
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn count_files(p: &Path) -> usize {
    walk(p)
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "parquet"))
        .count()
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

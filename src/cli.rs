//! The `genesys-parquet` command line: parses flags, builds the typed configuration once, and
//! hands over to the library. Exit codes: 0 ok, 1 failure, 2 bad usage.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{Duration, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{ClientArgs, OutputArgs, PipelineArgs};
use crate::interval::{parse_time, Interval};
use crate::pipeline::{self, DaySummary, Progress};
use crate::simulator::SimConfig;

#[derive(Parser, Debug)]
#[command(
    name = "genesys-parquet",
    version,
    about = "Genesys Cloud conversation details → Parquet tables (Hive-partitioned, Athena-ready)"
)]
pub struct Cli {
    /// More logging on stderr (repeat for more); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Extract conversation details for [start, end) into Parquet tables, day by day.
    Extract(ExtractCmd),
    /// Run the built-in Genesys Cloud API simulator.
    Simulate(SimulateCmd),
    /// Convert saved API pages (NDJSON / JSON, optionally .gz) into the same tables.
    Convert(ConvertCmd),
    /// Print the output tables' schema (Athena DDL or JSON).
    Schema(SchemaCmd),
    /// Start the simulator in-process and extract its last 3 days into a local folder.
    Demo(DemoCmd),
}

#[derive(Args, Debug)]
struct ExtractCmd {
    /// Start of the range (inclusive): a date (UTC midnight) or an RFC 3339 time.
    #[arg(long, env = "GP_START")]
    start: String,
    /// End of the range (exclusive): a date (UTC midnight) or an RFC 3339 time.
    #[arg(long, env = "GP_END")]
    end: String,
    /// Allow a range that does not start and end on UTC midnight (those days' partitions then
    /// hold only that part of the day).
    #[arg(long)]
    partial_days: bool,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

#[derive(Args, Debug)]
struct SimulateCmd {
    /// Address to listen on (port 0 picks a free port; the first stdout line says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[command(flatten)]
    sim: SimConfig,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Which days are replaced: only days the input declares it fully covers, \
    i.e. --start/--end, or else the coverage recorded in archives written by `extract \
    --archive-raw` (_raw/). Other input is refused: saved job pages for a day hold \
    conversations of the day before, which would otherwise replace that whole day. Records \
    outside the covered days are dropped and counted; a covered day without records is \
    replaced by an empty day.\n\nDuplicates: where a conversation appears more than once, \
    the copy from the most recently extracted page wins (archives record when they were \
    extracted); otherwise the later file on the command line wins.\n\nReads: with --start/--end \
    the files are read once, unless a conversation appears twice: then that read is discarded \
    and the files are read twice (first each record's id and start, to choose the copies, then \
    to convert), which takes files that stay as they are while convert runs, not pipes. \
    Without --start/--end they are always read twice (the archives' coverage comes first)."
)]
struct ConvertCmd {
    /// Saved pages: NDJSON (one page object a line), a JSON page, or a JSON array of
    /// conversations; `.gz` accepted. Later files win over earlier ones.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// First day the files fully cover (a date, UTC); with --end.
    #[arg(long, requires = "end")]
    start: Option<String>,
    /// Day after the last one the files fully cover (exclusive); with --start.
    #[arg(long, requires = "start")]
    end: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SchemaFormat {
    Athena,
    Json,
    Markdown,
}

#[derive(Args, Debug)]
struct SchemaCmd {
    #[arg(long, value_enum, default_value = "athena")]
    format: SchemaFormat,
    /// Glue/Athena database name used in the DDL.
    #[arg(long, default_value = "genesys")]
    database: String,
    /// Table locations in the DDL: the output root (s3://bucket/prefix).
    #[arg(long, default_value = "s3://YOUR-BUCKET/genesys")]
    location: String,
}

#[derive(Args, Debug)]
struct DemoCmd {
    /// Where the demo writes its tables.
    #[arg(long, default_value = "genesys-demo")]
    out: PathBuf,
    /// Conversations per simulated day.
    #[arg(long, default_value_t = 2000)]
    per_day: u32,
    /// Simulator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Runs the CLI and returns the process exit code.
pub async fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging(cli.verbose);
    match run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// A mistake in the command line: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,genesys_parquet=info",
        _ => "debug,genesys_parquet=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or a test reading stderr gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

async fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Extract(c) => extract(c).await,
        Command::Simulate(c) => {
            crate::simulator::run_cli(c.sim, c.listen).await?;
            Ok(0)
        }
        Command::Convert(c) => convert(c).await,
        Command::Schema(c) => {
            match c.format {
                SchemaFormat::Athena => {
                    print!("{}", crate::tables::ddl::athena(&c.database, &c.location))
                }
                SchemaFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&crate::tables::schema::to_json())?
                ),
                SchemaFormat::Markdown => print!("{}", crate::tables::docs::markdown()),
            }
            Ok(0)
        }
        Command::Demo(c) => demo(c).await,
    }
}

async fn extract(c: ExtractCmd) -> anyhow::Result<i32> {
    let usage = |e: &dyn std::fmt::Display| UsageError(e.to_string());
    let start = parse_time(&c.start).map_err(|e| usage(&format!("--start: {e}")))?;
    let end = parse_time(&c.end).map_err(|e| usage(&format!("--end: {e}")))?;
    let range = Interval::new(start, end).map_err(|e| usage(&e))?;
    if range.end > Utc::now() + Duration::minutes(1) {
        return Err(usage(&format!(
            "range {range} ends in the future: Genesys has no data after now"
        ))
        .into());
    }
    pipeline::check_range(&range, c.partial_days).map_err(|e| usage(&e))?;
    let pipeline_cfg = c.pipeline.build().map_err(|e| usage(&e))?;
    let store = c.output.store().await.map_err(|e| usage(&e))?;
    let client = c.client.build().await?;
    let progress = ProgressBarSink::new(range.dates().len() as u64);
    let summary = pipeline::extract(&client, store, range, &pipeline_cfg, progress.clone()).await;
    progress.finish();
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(if summary.ok { 0 } else { 1 })
}

async fn convert(c: ConvertCmd) -> anyhow::Result<i32> {
    let usage = |e: &dyn std::fmt::Display| UsageError(e.to_string());
    let range = match (&c.start, &c.end) {
        (Some(start), Some(end)) => {
            let start = parse_time(start).map_err(|e| usage(&format!("--start: {e}")))?;
            let end = parse_time(end).map_err(|e| usage(&format!("--end: {e}")))?;
            let range = Interval::new(start, end).map_err(|e| usage(&e))?;
            if !range.is_whole_days() {
                return Err(usage(&format!(
                    "--start/--end {range}: convert replaces whole UTC days; give dates \
                     (e.g. --start 2026-11-20 --end 2026-11-21)"
                ))
                .into());
            }
            Some(range)
        }
        _ => None,
    };
    let pipeline_cfg = c.pipeline.build().map_err(|e| usage(&e))?;
    let store = c.output.store().await.map_err(|e| usage(&e))?;
    let progress = ProgressBarSink::new(range.map(|r| r.dates().len() as u64).unwrap_or(0));
    let summary =
        match pipeline::convert_files(c.files, range, store, &pipeline_cfg, progress.clone()).await
        {
            Ok(s) => s,
            // Input that cannot be converted as given (unreadable, or no declared coverage).
            Err(e @ pipeline::PipelineError::Input(_)) => return Err(usage(&e).into()),
            Err(e) => return Err(e.into()),
        };
    progress.finish();
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(if summary.ok { 0 } else { 1 })
}

async fn demo(c: DemoCmd) -> anyhow::Result<i32> {
    let sim = SimConfig {
        seed: c.seed,
        per_day: c.per_day,
        // A demo should not wait for realistic job latencies.
        job_ready_after_ms: 300,
        ..SimConfig::default()
    };
    let end_date: NaiveDate = sim
        .end_date
        .unwrap_or_else(|| Utc::now().date_naive() - Duration::days(1));
    let handle = crate::simulator::start(sim.clone())
        .await
        .context("starting the simulator")?;
    let url = handle.base_url();
    eprintln!(
        "simulator listening on {url} (seed {}, {} conversations/day)",
        c.seed, c.per_day
    );
    let client = ClientArgs::for_simulator(&url, &sim.client_id, &sim.client_secret)
        .build()
        .await?;
    let range = Interval::new(
        crate::interval::day_start(end_date - Duration::days(2)),
        crate::interval::day_start(end_date + Duration::days(1)),
    )?;
    let store = OutputArgs::local(&c.out).store().await?;
    let mut cfg = PipelineArgs::default_for_demo().build()?;
    // The demo writes every dataset (the simulator grants every permission).
    cfg.datasets = crate::datasets::Dataset::all().to_vec();
    let progress = ProgressBarSink::new(3);
    let summary = pipeline::extract(&client, store, range, &cfg, progress.clone()).await;
    progress.finish();
    handle.shutdown().await;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    let out = c.out.display().to_string();
    let indent = |q: &str| q.replace('\n', "\n  ");
    let duckdb = indent(&crate::tables::ddl::names_query(&out));
    // The Athena twin, as the template installs it.
    let named = "handled_per_queue_and_wrapup_code";
    let athena = indent(&crate::tables::ddl::named_query(named).unwrap_or_default());
    eprintln!(
        "\nHandled conversations per queue and wrap-up code, by name, with DuckDB (pip install duckdb):\n\n  \
         python3 - <<'EOF'\n  import duckdb\n  print(duckdb.sql(\"\"\"\n  {duckdb}\n  \"\"\"))\n  EOF\n\n\
         In Athena (the template's Glue tables and views): the named query \
         genesys-parquet: {named}, that is\n\n  {athena}\n"
    );
    eprintln!(
        "Time in each routing status per agent and day (hours, counted in the day each record \
         started, up to the end of that day; open records too):\n\n  \
         python3 -c \"import duckdb; print(duckdb.sql(\\\"SELECT status_date, user_id, routing_status, \
         round(sum(least(coalesce(epoch_ms(end_time), epoch_ms(CAST(status_date AS DATE) + 1)), \
         epoch_ms(CAST(status_date AS DATE) + 1)) - epoch_ms(start_time))/3600000, 2) AS hours \
         FROM read_parquet('{out}/user_routing_status/*/*.parquet', hive_partitioning=true) \
         GROUP BY ALL ORDER BY ALL\\\"))\"\n\n\
         In Athena: the named queries time_in_routing_status_per_agent_per_day and \
         occupancy_per_agent_per_day (infra/athena/named_queries.sql), with agent names.\n"
    );
    Ok(if summary.ok { 0 } else { 1 })
}

/// Progress on stderr: a bar on a terminal, nothing otherwise.
struct ProgressBarSink {
    bar: Option<ProgressBar>,
}

impl ProgressBarSink {
    fn new(days: u64) -> Arc<Self> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(days);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} days  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Arc::new(Self { bar })
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for ProgressBarSink {
    fn page_done(&self, date: NaiveDate, conversations: u64) {
        if let Some(b) = &self.bar {
            b.set_message(format!("{date}: +{conversations} conversations"));
        }
    }

    fn day_finished(&self, s: &DaySummary) {
        if let Some(b) = &self.bar {
            b.inc(1);
            b.println(format!(
                "{} {}: {} conversations, {} files, {:.1}s",
                s.date, s.status, s.conversations, s.files, s.seconds
            ));
        }
    }
}

//! The `genesys-parquet` command line; everything lives in the library's `cli` module.

/// jemalloc rather than glibc's malloc: flat memory and less CPU in `convert` (Cargo.toml says
/// why).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read before `main`. One arena: the default, four arenas per core,
/// spreads the threads over arenas that each keep their own freed pages: `convert` of 500k
/// conversations peaked at 229 MiB, with one arena at 212 MiB and no more CPU (2026-12-02).
/// Huge pages for the heap and jemalloc's own metadata (`thp`, `metadata_thp`; jemalloc asks
/// with `madvise`, so they take where the kernel's THP mode is `madvise` or `always`), kept
/// rather than handed back (`dirty_decay_ms`, `muzzy_decay_ms`: -1): a 50k convert took 28,500
/// page faults, 5% of its CPU, and 3,600 with them; handing pages back split huge pages to
/// fault them in again (a 50k convert's CPU: 0.966 with huge pages alone, in 10 alternating
/// runs with 3 of them at 1.10-1.15; 0.938 both, one run above 1; 500k 0.985; peak RSS 8-10
/// MiB more: 122 and 134 MiB; 2026-12-05). The heap then stays at its peak until exit, which
/// `convert`'s streaming keeps flat. jemalloc is the process's `malloc` too (Cargo.toml says
/// why), so the symbol and the environment variable that still overrides it are the
/// unprefixed ones: `MALLOC_CONF`.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[allow(non_upper_case_globals)]
#[used]
#[export_name = "malloc_conf"]
static malloc_conf: &[u8; 77] =
    b"narenas:1,thp:always,metadata_thp:always,dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

#[tokio::main]
async fn main() {
    std::process::exit(genesys_parquet::cli::main().await);
}

//! The `genesys-parquet` command line; everything lives in the library's `cli` module.

/// jemalloc rather than glibc's malloc: flat memory and less CPU in `convert` (Cargo.toml says
/// why).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read before `main`: one arena. The default, four arenas per core,
/// spreads the threads over arenas that each keep their own freed pages: `convert` of 500k
/// conversations peaked at 229 MiB, with one arena at 212 MiB and no more CPU (2026-12-02).
/// jemalloc is the process's `malloc` too (Cargo.toml says why), so the symbol and the
/// environment variable that still overrides it are the unprefixed ones: `MALLOC_CONF`.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[allow(non_upper_case_globals)]
#[used]
#[export_name = "malloc_conf"]
static malloc_conf: &[u8; 10] = b"narenas:1\0";

#[tokio::main]
async fn main() {
    std::process::exit(genesys_parquet::cli::main().await);
}

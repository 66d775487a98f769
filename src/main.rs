//! The `genesys-parquet` command line; everything lives in the library's `cli` module.

/// jemalloc rather than glibc's malloc: flat memory and less CPU in `convert` (Cargo.toml says
/// why).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    std::process::exit(genesys_parquet::cli::main().await);
}

//! The `genesys-parquet` command line; everything lives in the library's `cli` module.

#[tokio::main]
async fn main() {
    std::process::exit(genesys_parquet::cli::main().await);
}

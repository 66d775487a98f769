//! genesys-parquet: Genesys Cloud conversation details → Hive-partitioned Parquet tables.
//!
//! Stages (see `../shared/ARCHITECTURE.md`): [`genesys`] pulls pages from the Analytics API,
//! [`tables`] turns pages into Arrow record batches of one versioned schema, [`sink`] writes
//! Parquet to a local folder or S3, and [`pipeline`] runs it day by day. [`simulator`] is a
//! faithful stand-in for the Genesys API used by tests, the demo and benchmarks.

pub mod cli;
pub mod config;
pub mod datasets;
pub(crate) mod direct_io;
pub mod error_class;
pub mod files;
pub mod genesys;
pub mod id_set;
pub mod interval;
pub(crate) mod json;
pub mod lambda;
pub mod page;
pub mod par;
pub mod pipeline;
pub mod simulator;
pub mod sink;
pub mod tables;

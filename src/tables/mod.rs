//! The output tables: one schema definition ([`schema`]), the streaming converter from API pages
//! to Arrow batches ([`Converter`]), and what is generated from the schema: Athena DDL
//! ([`ddl`]) and the README's table list ([`docs`]).

pub mod convert;
pub mod ddl;
pub mod docs;
pub mod lookup;
pub mod schema;

pub use convert::{ConvertError, ConvertOptions, ConvertStats, Converter, TableBatch};
pub use schema::{Table, SCHEMA_VERSION};

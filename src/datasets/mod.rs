//! Datasets: what the tool extracts, each described once by a [`Dataset`].
//!
//! A dataset is a kind of API record (a conversation, a user's status history, a queue) with
//! its own source, its own tables and its own partitioning. Everything else (the pipeline,
//! the converter, the commit protocol, the Glue/Athena DDL, the README's table list) reads the
//! descriptor and names no dataset.
//!
//! | | conversations | reference (a snapshot per run) | user details |
//! |---|---|---|---|
//! | source | details jobs / query by mode | entity listings | user details jobs / query |
//! | record id | `conversationId` | `id` | `userId` |
//! | dedupe | newest copy wins | newest copy wins | (merge by user) |
//! | partition | `conversation_date`: [`Partitioning::RecordDay`] of `conversationStart` | `snapshot_date`: [`Partitioning::RunDate`] | `status_date`: [`Partitioning::RowDay`] of each row's start |
//!
//! # How to add a dataset
//! 1. **Its module**, `src/datasets/<name>/` (or `<name>.rs`), modelled on [`conversations`]:
//!    a `pub static DATASET: Dataset` (name, envelope key, record id, dedupe rule,
//!    partitioning, source) and its schema: one `static X_DEF: TableDef =
//!    TableDef::new(TableSpec { dataset: &DATASET, pos, … })` per table, with
//!    `pub const X: Table = Table::of(&X_DEF)`, root first and parents before children, key
//!    columns ([`Key`]), required and free-text fields; the models' field lists beside them
//!    (`conversations/fields.rs`).
//! 2. **Its source**: a type implementing [`Source`] (plan, then a stream of [`Page`]s whose
//!    records are filtered to the partition and deduplicated), usually over a new
//!    [`GenesysClient`] method for its endpoints and paging.
//! 3. **Its simulator endpoints** (`src/simulator/`), with the API's paging and odd behaviours
//!    as settings, and tests against them.
//! 4. **One line** in [`ALL`] below.
//!
//! The Glue tables (`infra/gen_glue_tables.py` over `schema --format json`), the Athena DDL, the
//! README's table list, the sink's folders and the catalog's partitions follow from the
//! registry. Table names are unique across datasets (one Glue database); a test checks it.
//!
//! [`Page`]: crate::page::Page
//! [`Key`]: crate::tables::schema::Key

pub mod conversations;
pub mod reference;
pub mod user_details;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::genesys::{Extraction, GenesysClient, GenesysError, Mode};
use crate::interval::Interval;
use crate::tables::Table;

/// Every dataset, one line each.
pub static ALL: &[&Dataset] = &[
    &conversations::DATASET,
    &reference::USERS_DATASET,
    &reference::QUEUES_DATASET,
    &reference::WRAPUP_CODES_DATASET,
    &reference::DIVISIONS_DATASET,
    &reference::PRESENCE_DEFINITIONS_DATASET,
    &reference::SKILLS_DATASET,
    &reference::LANGUAGES_DATASET,
    &reference::GROUPS_DATASET,
    &user_details::DATASET,
];

/// One dataset: where its records come from, how they are keyed and partitioned, and the
/// tables they fill.
pub struct Dataset {
    /// Its name: `--datasets`, the folders of its leases and manifests (`_manifests/<name>/`).
    pub name: &'static str,
    pub description: &'static str,
    /// Its tables: root table(s) first, parents before children ([`TableSpec::pos`] is the
    /// position here).
    ///
    /// [`TableSpec::pos`]: crate::tables::schema::TableSpec::pos
    pub tables: &'static [Table],
    /// The JSON key of the record list in an API page (`{"conversations": [...]}`).
    pub envelope: &'static str,
    /// What identifies a record, and its time.
    pub record: RecordSpec,
    /// Which copy of a record is kept when it comes more than once.
    pub dedupe: Dedupe,
    pub partitioning: Partitioning,
    /// How its pages are pulled from the API.
    pub source: &'static (dyn Source + Sync),
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dataset({})", self.name)
    }
}

impl PartialEq for Dataset {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Dataset {}

/// Names that stand for several datasets in `--datasets` (the reference tables are a dataset
/// each, committed and failing on their own).
pub static GROUPS: &[(&str, &[&Dataset])] = &[(reference::GROUP, reference::ALL)];

/// The datasets a comma list names (`--datasets`, `GP_DATASETS`, a Lambda event's
/// `datasets`): registered dataset names, group names, or `all`; registry order, each once.
pub fn parse_list(list: &str) -> Result<Vec<&'static Dataset>, String> {
    let mut wanted: Vec<&'static Dataset> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let found: Vec<&'static Dataset> = if name == "all" {
            ALL.to_vec()
        } else if let Some((_, members)) = GROUPS.iter().find(|(g, _)| *g == name) {
            members.to_vec()
        } else if let Some(d) = Dataset::by_name(name) {
            vec![d]
        } else {
            let mut known: Vec<String> = GROUPS
                .iter()
                .map(|(g, m)| {
                    let names: Vec<&str> = m.iter().map(|d| d.name).collect();
                    format!("{g} ({})", names.join(", "))
                })
                .collect();
            known.extend(
                ALL.iter()
                    .filter(|d| !GROUPS.iter().any(|(_, m)| m.contains(d)))
                    .map(|d| d.name.to_string()),
            );
            return Err(format!(
                "unknown dataset {name:?}; known: all, {}",
                known.join(", ")
            ));
        };
        wanted.extend(found);
    }
    if wanted.is_empty() {
        return Err("no dataset named (give a comma list, or all)".into());
    }
    Ok(ALL.iter().copied().filter(|d| wanted.contains(d)).collect())
}

impl Dataset {
    /// The registered dataset called `name`.
    pub fn by_name(name: &str) -> Option<&'static Dataset> {
        ALL.iter().copied().find(|d| d.name == name)
    }

    /// Every registered dataset.
    pub fn all() -> &'static [&'static Dataset] {
        ALL
    }

    /// The tables that hold one row per record (no parent): the converter starts there.
    pub fn roots(&self) -> impl Iterator<Item = Table> + '_ {
        self.tables
            .iter()
            .copied()
            .filter(|t| t.spec().parent.is_none())
    }

    /// The (single) root table: a record of this dataset is a row of it.
    pub fn root(&self) -> Table {
        self.tables[0]
    }

    /// `conversation_date=2026-11-20`: the Hive folder of a partition in each table.
    pub fn partition_folder(&self, date: chrono::NaiveDate) -> String {
        format!("{}={date}", self.partitioning.column())
    }
}

/// The fields of a record that the pipeline reads before converting it (JSON names).
#[derive(Debug, Clone, Copy)]
pub struct RecordSpec {
    /// What one record is, in messages (`conversation 4f2…`).
    pub name: &'static str,
    /// Its id (`conversationId`): the dedupe key.
    pub id: &'static str,
    /// Its time (`conversationStart`), for datasets partitioned by the record's day.
    pub time: Option<&'static str>,
}

/// Which copy of a record is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedupe {
    /// One copy per record id: the most recently extracted (the sync query's over a job's in
    /// `auto` mode; archives record when); without extraction times, the later one.
    NewestCopy,
}

/// How rows are assigned to partitions (all partitions are UTC dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// The UTC date of the record's time ([`RecordSpec::time`]): every row of a record lands
    /// in one partition. `time_column` is that time as every table carries it (a key column).
    RecordDay {
        column: &'static str,
        time_column: &'static str,
    },
    /// The UTC date of each row's own `time_column`: one record (a user) may fill several
    /// partitions (status records of different days).
    RowDay {
        column: &'static str,
        time_column: &'static str,
    },
    /// The UTC date of the run (a snapshot per run; a rerun the same day replaces it).
    RunDate { column: &'static str },
}

impl Partitioning {
    /// The partition column (in paths, never in files).
    pub fn column(&self) -> &'static str {
        match *self {
            Partitioning::RecordDay { column, .. }
            | Partitioning::RowDay { column, .. }
            | Partitioning::RunDate { column } => column,
        }
    }

    /// The column whose UTC date is a row's partition, if rows carry it.
    pub fn time_column(&self) -> Option<&'static str> {
        match *self {
            Partitioning::RecordDay { time_column, .. }
            | Partitioning::RowDay { time_column, .. } => Some(time_column),
            Partitioning::RunDate { .. } => None,
        }
    }
}

/// How one partition's extraction will run, decided before anything is leased.
pub struct Planned {
    /// The API path(s) it uses, for the summary (`jobs`, `query`, `jobs+query`, `listing`).
    pub paths: String,
    /// The data lake's availability date, where the source reads it.
    pub data_availability_date: Option<DateTime<Utc>>,
    /// Starts pulling the pages (once the partition is leased).
    pub start: Box<dyn FnOnce() -> Extraction + Send>,
}

/// Where a dataset's records come from: plans one partition's extraction.
#[async_trait]
pub trait Source: Send + Sync {
    /// Plans the extraction of `interval` (one UTC day, or part of one) in `mode`. The pages
    /// it then yields hold exactly the records of that partition, each once.
    async fn plan(
        &self,
        client: &GenesysClient,
        interval: Interval,
        mode: Mode,
    ) -> Result<Planned, GenesysError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Table names are unique across datasets (one Glue database), each dataset's tables are
    /// numbered by position, and parents come before children.
    #[test]
    fn dataset_lists_name_datasets_groups_or_all() {
        let names = |l: &str| -> Vec<&str> {
            parse_list(l)
                .expect("list")
                .iter()
                .map(|d| d.name)
                .collect()
        };
        assert_eq!(names("all").len(), ALL.len());
        assert_eq!(names("conversations"), ["conversations"]);
        let r = names("reference");
        assert_eq!(r.len(), reference::ALL.len());
        assert!(r.contains(&"users") && r.contains(&"wrapup_codes"));
        assert_eq!(
            names(" queues , conversations,queues"),
            ["conversations", "queues"]
        );
        let e = parse_list("conversations,refrence").expect_err("typo");
        assert!(
            e.contains("\"refrence\"") && e.contains("reference (users"),
            "{e}"
        );
        assert!(parse_list(" , ").is_err());
    }

    #[test]
    fn the_registry_is_consistent() {
        let mut names = BTreeSet::new();
        for d in ALL {
            assert_eq!(Dataset::by_name(d.name), Some(*d));
            assert!(
                d.tables[0].spec().parent.is_none(),
                "{}: root first",
                d.name
            );
            for (i, t) in d.tables.iter().enumerate() {
                let spec = t.spec();
                assert_eq!(spec.pos, i, "{}.{}", d.name, spec.name);
                assert_eq!(spec.dataset, *d, "{}", spec.name);
                assert!(names.insert(spec.name), "table {} defined twice", spec.name);
                if let Some(p) = spec.parent {
                    assert!(p.idx() < i, "{}: parent after child", spec.name);
                    assert_eq!(p.spec().dataset, *d);
                }
            }
            let column = d.partitioning.column();
            for t in d.tables {
                assert!(t.columns().iter().all(|c| c.name != column), "{t}");
                if d.partitioning.time_column().is_some() {
                    assert!(
                        t.layout().partition_time.is_some(),
                        "{t}: no partition time"
                    );
                }
            }
        }
        assert_eq!(Table::all().len(), names.len());
    }
}

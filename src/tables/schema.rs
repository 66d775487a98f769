//! The one definition of the output tables. The converter, the Parquet metadata, the Athena DDL
//! (`schema --format athena`), the JSON the Glue tables in `template.yaml` are generated from, and
//! the README's table list all read it; nothing else describes a column.
//!
//! A dataset module ([`crate::datasets`]) declares its tables as [`TableSpec`]s: one table per
//! nested list of objects in a record, each row keyed by its parents' ids and a 0-based
//! position among its siblings, so joins and ordering are unambiguous. The dataset's partition
//! column is in the path, not in the files. This module turns a spec into columns, Arrow
//! schemas and the converter's lookup tables ([`Layout`]).

use std::collections::HashMap;

use super::lookup::KeyMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use serde_json::{json, Value};

/// Bumped whenever a column is added, removed, renamed or retyped. Stored in every file's
/// key-value metadata (`genesys_parquet.schema_version`).
pub const SCHEMA_VERSION: &str = "1";

/// A column's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Float,
    Bool,
    /// ISO-8601 UTC string in JSON, `Timestamp(Millisecond, "UTC")` in Arrow.
    Time,
    StrList,
    IntList,
}

impl Ty {
    pub fn arrow(self) -> DataType {
        match self {
            Ty::Str => DataType::Utf8,
            Ty::Int => DataType::Int64,
            Ty::Float => DataType::Float64,
            Ty::Bool => DataType::Boolean,
            Ty::Time => DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC"))),
            Ty::StrList => DataType::List(Arc::new(ArrowField::new("item", DataType::Utf8, true))),
            Ty::IntList => DataType::List(Arc::new(ArrowField::new("item", DataType::Int64, true))),
        }
    }

    /// The Athena (Hive DDL) type.
    pub fn athena(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "bigint",
            Ty::Float => "double",
            Ty::Bool => "boolean",
            Ty::Time => "timestamp",
            Ty::StrList => "array<string>",
            Ty::IntList => "array<bigint>",
        }
    }
}

/// A scalar field of an API model.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub json: &'static str,
    pub ty: Ty,
    pub doc: &'static str,
}

impl Field {
    pub const fn new(json: &'static str, ty: Ty, doc: &'static str) -> Self {
        Self { json, ty, doc }
    }
}

/// A handle on one output table (cheap to copy): its [`TableSpec`] and, built once, its
/// [`Layout`]. Tables are defined by their dataset's module (e.g.
/// [`crate::datasets::conversations::SEGMENTS`]) and registered with it
/// ([`crate::datasets::ALL`]); nothing outside `tables/` and that module names one.
#[derive(Clone, Copy)]
pub struct Table(&'static TableDef);

/// A table's definition as a dataset module declares it (`static X: TableDef =
/// TableDef::new(TableSpec { … })`), plus its layout, built on first use.
pub struct TableDef {
    spec: TableSpec,
    layout: OnceLock<Layout>,
}

impl TableDef {
    pub const fn new(spec: TableSpec) -> Self {
        Self {
            spec,
            layout: OnceLock::new(),
        }
    }
}

impl Table {
    pub const fn of(def: &'static TableDef) -> Table {
        Table(def)
    }

    /// Every table of every registered dataset, dataset by dataset, parents before children.
    pub fn all() -> &'static [Table] {
        static ALL: OnceLock<Vec<Table>> = OnceLock::new();
        ALL.get_or_init(|| {
            crate::datasets::ALL
                .iter()
                .flat_map(|d| d.tables.iter().copied())
                .collect()
        })
    }

    /// Position among its dataset's tables (the converter's buffer index).
    pub fn idx(self) -> usize {
        self.0.spec.pos
    }

    pub fn name(self) -> &'static str {
        self.0.spec.name
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::all().iter().copied().find(|t| t.name() == name)
    }

    pub fn spec(self) -> &'static TableSpec {
        &self.0.spec
    }

    /// The dataset the table belongs to.
    pub fn dataset(self) -> &'static crate::datasets::Dataset {
        self.0.spec.dataset
    }

    /// The columns, in file order (without the partition column).
    pub fn columns(self) -> &'static [Column] {
        &self.layout().columns
    }

    pub fn layout(self) -> &'static Layout {
        self.0.layout.get_or_init(|| build_layout(self))
    }

    fn key(self) -> (&'static str, usize) {
        (self.0.spec.dataset.name, self.0.spec.pos)
    }
}

impl PartialEq for Table {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Table {}

impl std::hash::Hash for Table {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0, state)
    }
}

impl PartialOrd for Table {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Dataset name, then position: (dataset, position) is unique (checked by the registry's test).
impl Ord for Table {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Table({})", self.name())
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a table's rows are found in a record.
#[derive(Debug)]
pub struct TableSpec {
    /// The dataset the table belongs to (its `tables` lists it at [`TableSpec::pos`]).
    pub dataset: &'static crate::datasets::Dataset,
    /// Position among the dataset's tables; parents come before their children.
    pub pos: usize,
    pub name: &'static str,
    pub description: &'static str,
    /// The API model one row comes from.
    pub model: &'static str,
    /// Where the objects sit, as a path from the record (empty for a root table).
    pub source: &'static str,
    pub parent: Option<Table>,
    /// Columns copied from the parent row (the parent has a column of the same name).
    pub keys: &'static [Key],
    /// Position among siblings (0-based).
    pub index: Option<&'static str>,
    pub fields: &'static [Field],
    /// Fields put first among the table's own fields (its id), for readability.
    pub lead: &'static [&'static str],
    /// Fields a record cannot do without (root tables): one missing, or of another type,
    /// refuses the record.
    pub required: &'static [&'static str],
    /// Fields holding free text (names, notes, values): never dictionary-encoded.
    pub free_text: &'static [&'static str],
    /// Fields whose value differs in (nearly) every row, like the row's own id: not
    /// dictionary-encoded (the dictionary would outgrow its page and be dropped after its
    /// hashing was paid for).
    pub distinct: &'static [&'static str],
    /// Lists of objects under this object, each its own table.
    pub children: &'static [(&'static str, Table)],
    /// A nested object flattened into this table's columns, its fields prefixed.
    pub flatten: Option<Flatten>,
    /// A string map under this object, one row per entry in a child table.
    pub map: Option<(&'static str, Table)>,
    /// Has an `extra` column (fields the schema does not know).
    pub extra: bool,
    /// The whole record as JSON (root tables; `ConvertOptions::raw`).
    pub raw: bool,
}

impl TableSpec {
    /// A child table with the common defaults (`extra`, nothing nested); override the rest
    /// with `TableSpec { lead: …, ..TableSpec::child(…) }`.
    #[allow(clippy::too_many_arguments)]
    pub const fn child(
        dataset: &'static crate::datasets::Dataset,
        pos: usize,
        name: &'static str,
        description: &'static str,
        model: &'static str,
        source: &'static str,
        parent: Table,
        keys: &'static [Key],
        index: &'static str,
        fields: &'static [Field],
    ) -> TableSpec {
        TableSpec {
            dataset,
            pos,
            name,
            description,
            model,
            source,
            parent: Some(parent),
            keys,
            index: Some(index),
            fields,
            lead: &[],
            required: &[],
            free_text: &[],
            distinct: &[],
            children: &[],
            flatten: None,
            map: None,
            extra: true,
            raw: false,
        }
    }
}

impl std::fmt::Debug for TableDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableDef({})", self.spec.name)
    }
}

#[derive(Debug)]
pub struct Flatten {
    pub json: &'static str,
    pub prefix: &'static str,
    pub fields: &'static [Field],
    pub children: &'static [(&'static str, Table)],
}

/// A key column inherited from the parent row.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub ty: Ty,
    pub doc: &'static str,
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Copied from the parent row.
    Key,
    /// Position among siblings.
    Index,
    /// An API field, stored in the converter's slot `slot`.
    Field { slot: usize },
    /// Fields the schema does not know (or whose value had an unexpected type), as JSON.
    Extra,
    /// The whole record as JSON.
    Raw,
}

/// One column of a table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: Ty,
    pub role: Role,
    /// JSON path of the value in a record.
    pub source: String,
    pub doc: String,
    /// Free text (or JSON): never dictionary-encoded, no statistics.
    pub free_text: bool,
    /// Whether a Parquet dictionary pays for this column: not for free text, values that
    /// differ in nearly every row (times in milliseconds, measurements, a row's own id) nor
    /// ids copied from the parent row (zstd compresses their runs as well).
    pub dictionary: bool,
}

/// Millisecond times and floating-point measurements are nearly all distinct.
fn pays_dictionary(ty: Ty) -> bool {
    !matches!(ty, Ty::Time | Ty::Float)
}

/// How the converter fills a table: columns plus the JSON name → slot lookup.
#[derive(Debug)]
pub struct Layout {
    pub columns: Vec<Column>,
    /// Types of the field slots, in slot order.
    pub slots: Vec<Ty>,
    /// JSON names of the slots (for `extra` on a type mismatch).
    pub slot_json: Vec<String>,
    /// JSON key of this object → what it is (looked up for every key of every record).
    pub lookup: KeyMap<Entry>,
    /// JSON key inside the flattened object → what it is.
    pub flat_lookup: KeyMap<Entry>,
    /// Key columns this table's children copy from it (their [`TableSpec::keys`]).
    pub child_keys: Vec<&'static str>,
    /// The column whose UTC date is the row's partition (none for a run-date partition).
    pub partition_time: Option<usize>,
    pub file_schema: SchemaRef,
    pub batch_schema: SchemaRef,
}

#[derive(Debug, Clone, Copy)]
pub enum Entry {
    Slot(usize, Ty),
    Children(Table),
    Map(Table),
    Flatten,
}

/// `mediaStatsMinConversationRFactor` → `media_stats_min_conversation_r_factor`.
pub fn snake_case(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 8);
    for (i, c) in json.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn flat_column_name(prefix: &str, json: &str) -> String {
    let s = snake_case(json);
    // flow.flowId → flow_id, not flow_flow_id.
    if s.starts_with(prefix) {
        s
    } else {
        format!("{prefix}{s}")
    }
}

fn ordered<'a>(fields: &'a [Field], lead: &[&str]) -> Vec<&'a Field> {
    let mut v: Vec<&Field> = lead
        .iter()
        .filter_map(|l| fields.iter().find(|f| f.json == *l))
        .collect();
    v.extend(fields.iter().filter(|f| !lead.contains(&f.json)));
    v
}

fn build_layout(table: Table) -> Layout {
    let spec = table.spec();
    let partitioning = &table.dataset().partitioning;
    let mut columns = Vec::new();
    let mut slots = Vec::new();
    let mut slot_json = Vec::new();
    let mut lookup = KeyMap::default();
    let mut flat_lookup = KeyMap::default();
    let src = |json: &str| {
        if spec.source.is_empty() {
            json.to_string()
        } else {
            format!("{}.{json}", spec.source)
        }
    };
    for k in spec.keys {
        columns.push(Column {
            name: k.name.into(),
            ty: k.ty,
            role: Role::Key,
            source: String::new(),
            doc: k.doc.into(),
            free_text: false,
            dictionary: false,
        });
    }
    if let Some(index) = spec.index {
        columns.push(Column {
            name: index.into(),
            ty: Ty::Int,
            role: Role::Index,
            source: String::new(),
            doc: format!("0-based position in {}", spec.source),
            free_text: false,
            dictionary: true,
        });
    }
    for f in ordered(spec.fields, spec.lead) {
        let slot = slots.len();
        slots.push(f.ty);
        slot_json.push(f.json.to_string());
        lookup.insert(f.json, Entry::Slot(slot, f.ty));
        columns.push(Column {
            name: snake_case(f.json),
            ty: f.ty,
            role: Role::Field { slot },
            source: src(f.json),
            doc: f.doc.into(),
            free_text: spec.free_text.contains(&f.json),
            dictionary: pays_dictionary(f.ty)
                && !spec.free_text.contains(&f.json)
                && !spec.distinct.contains(&f.json),
        });
    }
    if let Some(flat) = &spec.flatten {
        lookup.insert(flat.json, Entry::Flatten);
        for f in flat.fields {
            let slot = slots.len();
            slots.push(f.ty);
            slot_json.push(format!("{}.{}", flat.json, f.json));
            flat_lookup.insert(f.json, Entry::Slot(slot, f.ty));
            columns.push(Column {
                name: flat_column_name(flat.prefix, f.json),
                ty: f.ty,
                role: Role::Field { slot },
                source: src(&format!("{}.{}", flat.json, f.json)),
                doc: f.doc.into(),
                free_text: false,
                dictionary: pays_dictionary(f.ty),
            });
        }
        for (json, t) in flat.children {
            flat_lookup.insert(json, Entry::Children(*t));
        }
    }
    for (json, t) in spec.children {
        lookup.insert(json, Entry::Children(*t));
    }
    if let Some((json, t)) = spec.map {
        lookup.insert(json, Entry::Map(t));
    }
    if spec.extra {
        columns.push(Column {
            name: "extra".into(),
            ty: Ty::Str,
            role: Role::Extra,
            source: String::new(),
            doc: "Fields this schema version does not know, or whose value had an unexpected \
                  type, as a JSON object (null when none)"
                .into(),
            free_text: true,
            dictionary: false,
        });
    }
    if spec.raw {
        columns.push(Column {
            name: "raw".into(),
            ty: Ty::Str,
            role: Role::Raw,
            source: String::new(),
            doc: format!(
                "The whole {} record as received, JSON (null unless written with --raw)",
                table.dataset().record.name
            ),
            free_text: true,
            dictionary: false,
        });
    }
    let mut child_keys: Vec<&'static str> = Vec::new();
    let flat_children = spec.flatten.as_ref().map(|f| f.children).unwrap_or(&[]);
    let kids = spec
        .children
        .iter()
        .chain(flat_children)
        .map(|(_, t)| *t)
        .chain(spec.map.map(|(_, t)| t));
    for child in kids {
        for k in child.spec().keys {
            if !child_keys.contains(&k.name) {
                child_keys.push(k.name);
            }
        }
    }
    let partition_time = partitioning
        .time_column()
        .and_then(|name| columns.iter().position(|c| c.name == name));
    let file_fields: Vec<ArrowField> = columns
        .iter()
        .map(|c| {
            // Keys and indexes are always set; everything the API sends may be absent.
            let nullable = !matches!(c.role, Role::Key | Role::Index);
            ArrowField::new(c.name.clone(), c.ty.arrow(), nullable)
        })
        .collect();
    let metadata: HashMap<String, String> = [(
        "genesys_parquet.schema_version".to_string(),
        SCHEMA_VERSION.to_string(),
    )]
    .into();
    let file_schema = Arc::new(Schema::new_with_metadata(
        file_fields.clone(),
        metadata.clone(),
    ));
    // In the converter's batches a string key is a dictionary over its parent's column (the
    // child rows' parent row numbers as keys): a parent's id is held once, not copied onto
    // each of its children's rows. The file schema (and so every reader) still says string.
    let mut batch_fields: Vec<ArrowField> = columns
        .iter()
        .zip(file_fields)
        .map(|(c, f)| match (c.role, c.ty) {
            (Role::Key, Ty::Str) => f.with_data_type(key_dictionary_type()),
            _ => f,
        })
        .collect();
    batch_fields.push(ArrowField::new(
        partitioning.column(),
        partition_type(),
        false,
    ));
    let batch_schema = Arc::new(Schema::new_with_metadata(batch_fields, metadata));
    Layout {
        columns,
        slots,
        slot_json,
        lookup,
        flat_lookup,
        child_keys,
        partition_time,
        file_schema,
        batch_schema,
    }
}

/// The schema of a table's Parquet files (no partition column).
pub fn file_schema(table: Table) -> SchemaRef {
    table.layout().file_schema.clone()
}

/// The type of a string key column in the converter's batches: a dictionary whose keys are
/// parent row numbers and whose values are the parent's column ([`batch_schema`]).
pub fn key_dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8))
}

/// The type of the partition column in the converter's batches: its dates (`YYYY-MM-DD`) as
/// a dictionary, whose values are the batch's days (nearly always one).
pub fn partition_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8))
}

/// The schema of the converter's batches: the file schema, string keys as dictionaries
/// ([`key_dictionary_type`]), plus the dataset's partition column last ([`partition_type`]).
pub fn batch_schema(table: Table) -> SchemaRef {
    table.layout().batch_schema.clone()
}

/// The whole schema as JSON (what `schema --format json` prints and infra/ generates Glue
/// tables from).
pub fn to_json() -> Value {
    let tables: Vec<Value> = Table::all()
        .iter()
        .map(|t| {
            let spec = t.spec();
            let partition = t.dataset().partitioning.column();
            let columns: Vec<Value> = t
                .columns()
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "type": c.ty.athena(),
                        "arrow_type": c.ty.arrow().to_string(),
                        "nullable": !matches!(c.role, Role::Key | Role::Index),
                        "source": c.source,
                        "description": c.doc,
                    })
                })
                .collect();
            json!({
                "name": spec.name,
                "dataset": spec.dataset.name,
                "description": spec.description,
                "model": spec.model,
                "parent": spec.parent.map(|p| p.name()),
                "partition_keys": [{"name": partition, "type": "string"}],
                "columns": columns,
                "latest_view": super::ddl::latest_view(*t)
                    .map(|(name, sql)| json!({"name": name, "sql": sql})),
            })
        })
        .collect();
    json!({
        "schema_version": SCHEMA_VERSION,
        "tables": tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::conversations::{
        self as conv, PARTICIPANT_ATTRIBUTES, SEGMENTS, SESSIONS,
    };
    use std::collections::BTreeSet;

    #[test]
    fn snake_case_of_tricky_names() {
        for (json, want) in [
            (
                "mediaStatsMinConversationMos",
                "media_stats_min_conversation_mos",
            ),
            (
                "mediaStatsMinConversationRFactor",
                "media_stats_min_conversation_r_factor",
            ),
            ("oTotalScore", "o_total_score"),
            ("q850ResponseCodes", "q850_response_codes"),
            ("nNextContactAvoided", "n_next_contact_avoided"),
            ("conversationId", "conversation_id"),
            ("ani", "ani"),
        ] {
            assert_eq!(snake_case(json), want);
        }
        assert_eq!(flat_column_name("flow_", "flowId"), "flow_id");
        assert_eq!(flat_column_name("flow_", "exitReason"), "flow_exit_reason");
    }

    #[test]
    fn column_names_are_unique_and_keys_lead() {
        for t in Table::all() {
            let names: Vec<&str> = t.columns().iter().map(|c| c.name.as_str()).collect();
            let set: BTreeSet<&str> = names.iter().copied().collect();
            assert_eq!(set.len(), names.len(), "{t}: duplicate column");
            assert!(!names.contains(&t.dataset().partitioning.column()), "{t}");
        }
        for t in conv::DATASET.tables {
            let names: Vec<&str> = t.columns().iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names[0], "conversation_id", "{t}");
            assert!(names.contains(&"conversation_start"), "{t}");
        }
        let seg: Vec<&str> = SEGMENTS
            .columns()
            .iter()
            .take(5)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            seg,
            [
                "conversation_id",
                "conversation_start",
                "participant_id",
                "session_id",
                "segment_index"
            ]
        );
    }

    /// Every field of every record model in sdk-models.json is a column, a child table, or the
    /// flattened flow: nothing the API sends is dropped.
    #[test]
    fn every_sdk_field_is_a_column() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/genesys/sdk-models.json");
        let models: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("sdk-models.json"))
                .expect("json");
        let mut checked = 0;
        for t in conv::DATASET.tables {
            let spec = t.spec();
            let model = spec.model;
            let Some(fields) = models.get(model).and_then(Value::as_object) else {
                assert_eq!(*t, PARTICIPANT_ATTRIBUTES);
                continue;
            };
            let layout = t.layout();
            for (name, def) in fields {
                let ty = def["type"].as_str().expect("type");
                let entry = layout
                    .lookup
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("{model}.{name} ({ty}) has no column in {t}"));
                if let Entry::Slot(_, col_ty) = entry {
                    let want = match ty {
                        "str" => Ty::Str,
                        "int" => Ty::Int,
                        "float" => Ty::Float,
                        "bool" => Ty::Bool,
                        "datetime" => Ty::Time,
                        "list[str]" => Ty::StrList,
                        "list[int]" => Ty::IntList,
                        other => panic!("{model}.{name}: {other} stored as a scalar"),
                    };
                    assert_eq!(*col_ty, want, "{model}.{name}");
                }
                checked += 1;
            }
        }
        let flow = models["AnalyticsFlow"].as_object().expect("flow");
        for name in flow.keys() {
            assert!(
                SESSIONS.layout().flat_lookup.contains_key(name.as_str()),
                "AnalyticsFlow.{name}"
            );
            checked += 1;
        }
        // Keep the count honest: all models were walked.
        assert!(checked >= 225, "{checked}");
    }

    #[test]
    fn json_schema_shape() {
        let v = to_json();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        let tables = v["tables"].as_array().expect("tables");
        assert_eq!(tables.len(), Table::all().len());
        let conv = &tables[0];
        assert_eq!(conv["name"], "conversations");
        assert_eq!(conv["dataset"], "conversations");
        assert_eq!(conv["partition_keys"][0]["name"], "conversation_date");
        assert_eq!(conv["columns"][1]["name"], "conversation_start");
        assert_eq!(conv["columns"][1]["type"], "timestamp");
    }
}

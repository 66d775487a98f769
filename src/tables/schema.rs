//! The one definition of the output tables. The converter, the Parquet metadata, the Athena DDL
//! (`schema --format athena`), the JSON the Glue tables in `template.yaml` are generated from, and
//! the README's table list all read it; nothing else describes a column.
//!
//! Shape: one table per nested list of objects in a conversation record, each row keyed by
//! `conversation_id` (+ `participant_id`, `session_id`, `segment_index` where they apply) and a
//! 0-based position among its siblings, so joins and ordering are unambiguous. Every table has
//! `conversation_start`; `conversation_date` (UTC date of `conversation_start`) is the Hive
//! partition, so it is in the path, not in the files.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use serde_json::{json, Value};

use super::fields;

/// Bumped whenever a column is added, removed, renamed or retyped. Stored in every file's
/// key-value metadata (`genesys_parquet.schema_version`).
pub const SCHEMA_VERSION: &str = "1";

/// The partition column (in paths, never in files).
pub const PARTITION_COLUMN: &str = "conversation_date";

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

/// The output tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Conversations,
    Participants,
    ParticipantAttributes,
    Sessions,
    FlowOutcomes,
    Segments,
    SegmentProperties,
    ScoredAgents,
    SessionMetrics,
    MediaEndpointStats,
    ProposedAgents,
    AgentGroups,
    Evaluations,
    Surveys,
    Resolutions,
}

/// Parents come before their children (the converter materializes keys in this order).
const ALL: [Table; 15] = [
    Table::Conversations,
    Table::Participants,
    Table::ParticipantAttributes,
    Table::Sessions,
    Table::FlowOutcomes,
    Table::Segments,
    Table::SegmentProperties,
    Table::ScoredAgents,
    Table::SessionMetrics,
    Table::MediaEndpointStats,
    Table::ProposedAgents,
    Table::AgentGroups,
    Table::Evaluations,
    Table::Surveys,
    Table::Resolutions,
];

impl Table {
    pub fn all() -> &'static [Table] {
        &ALL
    }

    pub fn idx(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn from_name(name: &str) -> Option<Table> {
        ALL.iter().copied().find(|t| t.name() == name)
    }

    pub fn spec(self) -> &'static TableSpec {
        &specs()[self.idx()]
    }

    /// The columns, in file order (without the partition column).
    pub fn columns(self) -> &'static [Column] {
        &layouts()[self.idx()].columns
    }

    pub fn layout(self) -> &'static Layout {
        &layouts()[self.idx()]
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
    pub table: Table,
    pub name: &'static str,
    pub description: &'static str,
    /// The API model one row comes from.
    pub model: &'static str,
    /// Where the objects sit, as a path from the conversation record.
    pub source: &'static str,
    pub parent: Option<Table>,
    /// Columns copied from the parent row (the parent has a column of the same name).
    pub keys: &'static [Key],
    /// Position among siblings (0-based).
    pub index: Option<&'static str>,
    pub fields: &'static [Field],
    /// Fields put first among the table's own fields (its id), for readability.
    pub lead: &'static [&'static str],
    /// Lists of objects under this object, each its own table.
    pub children: &'static [(&'static str, Table)],
    /// A nested object flattened into this table's columns, its fields prefixed.
    pub flatten: Option<Flatten>,
    /// A string map under this object, one row per entry in a child table.
    pub map: Option<(&'static str, Table)>,
    /// The whole record as JSON (conversations only; `ConvertOptions::raw`).
    pub raw: bool,
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

const K_CONV: Key = Key {
    name: "conversation_id",
    ty: Ty::Str,
    doc: "The conversation this row belongs to (conversations.conversation_id)",
};
const K_START: Key = Key {
    name: "conversation_start",
    ty: Ty::Time,
    doc: "Start of the conversation (conversations.conversation_start); its UTC date is the partition",
};
const K_PART: Key = Key {
    name: "participant_id",
    ty: Ty::Str,
    doc: "The participant this row belongs to (participants.participant_id)",
};
const K_SESS: Key = Key {
    name: "session_id",
    ty: Ty::Str,
    doc: "The session this row belongs to (sessions.session_id)",
};
const K_SEG: Key = Key {
    name: "segment_index",
    ty: Ty::Int,
    doc: "The segment this row belongs to (segments.segment_index within the session)",
};

const CONV_KEYS: &[Key] = &[K_CONV, K_START];
const PART_KEYS: &[Key] = &[K_CONV, K_START, K_PART];
const SESS_KEYS: &[Key] = &[K_CONV, K_START, K_PART, K_SESS];
const SEG_KEYS: &[Key] = &[K_CONV, K_START, K_PART, K_SESS, K_SEG];

const ATTRIBUTE: &[Field] = &[
    Field::new("name", Ty::Str, "Attribute name"),
    Field::new("value", Ty::Str, "Attribute value"),
];

fn specs() -> &'static [TableSpec; 15] {
    static SPECS: OnceLock<[TableSpec; 15]> = OnceLock::new();
    SPECS.get_or_init(|| {
        let child =
            |table, name, description, model, source, parent, keys, index, fields| TableSpec {
                table,
                name,
                description,
                model,
                source,
                parent: Some(parent),
                keys,
                index: Some(index),
                fields,
                lead: &[],
                children: &[],
                flatten: None,
                map: None,
                raw: false,
            };
        [
            TableSpec {
                table: Table::Conversations,
                name: "conversations",
                description: "One row per conversation (AnalyticsConversation).",
                model: "AnalyticsConversation",
                source: "",
                parent: None,
                keys: &[],
                index: None,
                fields: fields::CONVERSATION,
                lead: &["conversationId", "conversationStart", "conversationEnd"],
                children: &[
                    ("participants", Table::Participants),
                    ("evaluations", Table::Evaluations),
                    ("surveys", Table::Surveys),
                    ("resolutions", Table::Resolutions),
                ],
                flatten: None,
                map: None,
                raw: true,
            },
            TableSpec {
                lead: &["participantId"],
                children: &[("sessions", Table::Sessions)],
                map: Some(("attributes", Table::ParticipantAttributes)),
                ..child(
                    Table::Participants,
                    "participants",
                    "One row per participant of a conversation (AnalyticsParticipant).",
                    "AnalyticsParticipant",
                    "participants[]",
                    Table::Conversations,
                    CONV_KEYS,
                    "participant_index",
                    fields::PARTICIPANT,
                )
            },
            child(
                Table::ParticipantAttributes,
                "participant_attributes",
                "Participant attributes (custom data set by flows and scripts), one row per \
                 entry; only async job results carry them.",
                "AnalyticsParticipant.attributes",
                "participants[].attributes{}",
                Table::Participants,
                PART_KEYS,
                "attribute_index",
                ATTRIBUTE,
            ),
            TableSpec {
                lead: &["sessionId", "mediaType"],
                children: &[
                    ("segments", Table::Segments),
                    ("metrics", Table::SessionMetrics),
                    ("mediaEndpointStats", Table::MediaEndpointStats),
                    ("proposedAgents", Table::ProposedAgents),
                    ("agentGroups", Table::AgentGroups),
                ],
                flatten: Some(Flatten {
                    json: "flow",
                    prefix: "flow_",
                    fields: fields::FLOW,
                    children: &[("outcomes", Table::FlowOutcomes)],
                }),
                ..child(
                    Table::Sessions,
                    "sessions",
                    "One row per session of a participant (AnalyticsSession), with the IVR \
                     flow (AnalyticsFlow) flattened into flow_* columns.",
                    "AnalyticsSession",
                    "participants[].sessions[]",
                    Table::Participants,
                    PART_KEYS,
                    "session_index",
                    fields::SESSION,
                )
            },
            child(
                Table::FlowOutcomes,
                "flow_outcomes",
                "Outcomes of a session's IVR flow (AnalyticsFlowOutcome).",
                "AnalyticsFlowOutcome",
                "participants[].sessions[].flow.outcomes[]",
                Table::Sessions,
                SESS_KEYS,
                "outcome_index",
                fields::FLOW_OUTCOME,
            ),
            TableSpec {
                lead: &["segmentStart", "segmentEnd", "segmentType"],
                children: &[
                    ("properties", Table::SegmentProperties),
                    ("scoredAgents", Table::ScoredAgents),
                ],
                ..child(
                    Table::Segments,
                    "segments",
                    "One row per segment of a session (AnalyticsConversationSegment).",
                    "AnalyticsConversationSegment",
                    "participants[].sessions[].segments[]",
                    Table::Sessions,
                    SESS_KEYS,
                    "segment_index",
                    fields::CONVERSATION_SEGMENT,
                )
            },
            child(
                Table::SegmentProperties,
                "segment_properties",
                "Properties of a segment (AnalyticsProperty).",
                "AnalyticsProperty",
                "participants[].sessions[].segments[].properties[]",
                Table::Segments,
                SEG_KEYS,
                "property_index",
                fields::PROPERTY,
            ),
            child(
                Table::ScoredAgents,
                "scored_agents",
                "Agents scored by predictive routing for a segment (AnalyticsScoredAgent).",
                "AnalyticsScoredAgent",
                "participants[].sessions[].segments[].scoredAgents[]",
                Table::Segments,
                SEG_KEYS,
                "scored_agent_index",
                fields::SCORED_AGENT,
            ),
            child(
                Table::SessionMetrics,
                "session_metrics",
                "Metrics of a session (AnalyticsSessionMetric): tAlert, tAnswered, tTalk, \
                 tHeld, tAcw, tHandle, nConnected, …; value in milliseconds or a count.",
                "AnalyticsSessionMetric",
                "participants[].sessions[].metrics[]",
                Table::Sessions,
                SESS_KEYS,
                "metric_index",
                fields::SESSION_METRIC,
            ),
            child(
                Table::MediaEndpointStats,
                "media_endpoint_stats",
                "Media quality statistics of a session's endpoint (AnalyticsMediaEndpointStat).",
                "AnalyticsMediaEndpointStat",
                "participants[].sessions[].mediaEndpointStats[]",
                Table::Sessions,
                SESS_KEYS,
                "stat_index",
                fields::MEDIA_ENDPOINT_STAT,
            ),
            child(
                Table::ProposedAgents,
                "proposed_agents",
                "Agents proposed by routing for a session (AnalyticsProposedAgent).",
                "AnalyticsProposedAgent",
                "participants[].sessions[].proposedAgents[]",
                Table::Sessions,
                SESS_KEYS,
                "proposed_agent_index",
                fields::PROPOSED_AGENT,
            ),
            child(
                Table::AgentGroups,
                "agent_groups",
                "Agent groups of a session (AnalyticsAgentGroup).",
                "AnalyticsAgentGroup",
                "participants[].sessions[].agentGroups[]",
                Table::Sessions,
                SESS_KEYS,
                "agent_group_index",
                fields::AGENT_GROUP,
            ),
            child(
                Table::Evaluations,
                "evaluations",
                "Quality evaluations of a conversation (AnalyticsEvaluation).",
                "AnalyticsEvaluation",
                "evaluations[]",
                Table::Conversations,
                CONV_KEYS,
                "evaluation_index",
                fields::EVALUATION,
            ),
            child(
                Table::Surveys,
                "surveys",
                "Surveys of a conversation (AnalyticsSurvey).",
                "AnalyticsSurvey",
                "surveys[]",
                Table::Conversations,
                CONV_KEYS,
                "survey_index",
                fields::SURVEY,
            ),
            child(
                Table::Resolutions,
                "resolutions",
                "Resolutions of a conversation (AnalyticsResolution).",
                "AnalyticsResolution",
                "resolutions[]",
                Table::Conversations,
                CONV_KEYS,
                "resolution_index",
                fields::RESOLUTION,
            ),
        ]
    })
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
    /// JSON path of the value in a conversation record.
    pub source: String,
    pub doc: String,
}

/// How the converter fills a table: columns plus the JSON name → slot lookup.
#[derive(Debug)]
pub struct Layout {
    pub columns: Vec<Column>,
    /// Types of the field slots, in slot order.
    pub slots: Vec<Ty>,
    /// JSON names of the slots (for `extra` on a type mismatch).
    pub slot_json: Vec<String>,
    /// JSON key of this object → what it is. (Looked up for every key of every record: Fx
    /// hashing, as short trusted keys need no DoS-resistant hasher.)
    pub lookup: FxHashMap<&'static str, Entry>,
    /// JSON key inside the flattened object → what it is.
    pub flat_lookup: FxHashMap<&'static str, Entry>,
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

fn layouts() -> &'static [Layout] {
    static LAYOUTS: OnceLock<Vec<Layout>> = OnceLock::new();
    LAYOUTS.get_or_init(|| ALL.iter().map(|t| build_layout(t.spec())).collect())
}

fn build_layout(spec: &TableSpec) -> Layout {
    let mut columns = Vec::new();
    let mut slots = Vec::new();
    let mut slot_json = Vec::new();
    let mut lookup = FxHashMap::default();
    let mut flat_lookup = FxHashMap::default();
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
        });
    }
    if let Some(index) = spec.index {
        columns.push(Column {
            name: index.into(),
            ty: Ty::Int,
            role: Role::Index,
            source: String::new(),
            doc: format!("0-based position in {}", spec.source),
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
    if spec.table != Table::ParticipantAttributes {
        columns.push(Column {
            name: "extra".into(),
            ty: Ty::Str,
            role: Role::Extra,
            source: String::new(),
            doc: "Fields this schema version does not know, or whose value had an unexpected \
                  type, as a JSON object (null when none)"
                .into(),
        });
    }
    if spec.raw {
        columns.push(Column {
            name: "raw".into(),
            ty: Ty::Str,
            role: Role::Raw,
            source: String::new(),
            doc: "The whole conversation record as received, JSON (null unless written with \
                  --raw)"
                .into(),
        });
    }
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
    let mut batch_fields = file_fields;
    batch_fields.push(ArrowField::new(PARTITION_COLUMN, DataType::Utf8, false));
    let batch_schema = Arc::new(Schema::new_with_metadata(batch_fields, metadata));
    Layout {
        columns,
        slots,
        slot_json,
        lookup,
        flat_lookup,
        file_schema,
        batch_schema,
    }
}

/// The schema of a table's Parquet files (no partition column).
pub fn file_schema(table: Table) -> SchemaRef {
    table.layout().file_schema.clone()
}

/// The schema of the converter's batches: the file schema plus `conversation_date` last.
pub fn batch_schema(table: Table) -> SchemaRef {
    table.layout().batch_schema.clone()
}

/// The whole schema as JSON (what `schema --format json` prints and infra/ generates Glue
/// tables from).
pub fn to_json() -> Value {
    let tables: Vec<Value> = ALL
        .iter()
        .map(|t| {
            let spec = t.spec();
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
                "description": spec.description,
                "model": spec.model,
                "parent": spec.parent.map(|p| p.name()),
                "columns": columns,
            })
        })
        .collect();
    json!({
        "schema_version": SCHEMA_VERSION,
        "partition_keys": [{"name": PARTITION_COLUMN, "type": "string"}],
        "tables": tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
            assert_eq!(names[0], "conversation_id", "{t}");
            assert!(names.contains(&"conversation_start"), "{t}");
            assert!(!names.contains(&PARTITION_COLUMN), "{t}");
        }
        let seg: Vec<&str> = Table::Segments
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
        for t in Table::all() {
            let spec = t.spec();
            let model = spec.model;
            let Some(fields) = models.get(model).and_then(Value::as_object) else {
                assert_eq!(*t, Table::ParticipantAttributes);
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
                Table::Sessions
                    .layout()
                    .flat_lookup
                    .contains_key(name.as_str()),
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
        assert_eq!(v["partition_keys"][0]["name"], "conversation_date");
        let tables = v["tables"].as_array().expect("tables");
        assert_eq!(tables.len(), 15);
        let conv = &tables[0];
        assert_eq!(conv["name"], "conversations");
        assert_eq!(conv["columns"][1]["name"], "conversation_start");
        assert_eq!(conv["columns"][1]["type"], "timestamp");
    }
}

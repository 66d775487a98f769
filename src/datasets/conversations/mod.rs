//! The conversation details dataset: one record per conversation (`AnalyticsConversation`),
//! from the analytics details jobs (history) and the synchronous details query (recent hours),
//! 15 tables, partitioned `conversation_date` (UTC date of `conversationStart`).
//!
//! Shape: one table per nested list of objects in a conversation record, each row keyed by
//! `conversation_id` (+ `participant_id`, `session_id`, `segment_index` where they apply) and a
//! 0-based position among its siblings, so joins and ordering are unambiguous. Every table has
//! `conversation_start`; `conversation_date` (UTC date of `conversation_start`) is the Hive
//! partition, so it is in the path, not in the files.

mod fields;

use async_trait::async_trait;

use super::{reference, Dataset, Dedupe, IdRef, Partitioning, Planned, RecordSpec, Source};
use crate::genesys::{GenesysClient, GenesysError, Mode};
use crate::interval::Interval;
use crate::tables::schema::{Field, Flatten, Key, Table, TableDef, TableSpec, Ty};

/// The dataset (registered in [`super::ALL`]).
pub static DATASET: Dataset = Dataset {
    name: "conversations",
    description: "Conversation details (analytics jobs and query), one partition per UTC day of \
                  the conversations' start",
    tables: &[
        CONVERSATIONS,
        PARTICIPANTS,
        PARTICIPANT_ATTRIBUTES,
        SESSIONS,
        FLOW_OUTCOMES,
        SEGMENTS,
        SEGMENT_PROPERTIES,
        SCORED_AGENTS,
        SESSION_METRICS,
        MEDIA_ENDPOINT_STATS,
        PROPOSED_AGENTS,
        AGENT_GROUPS,
        EVALUATIONS,
        SURVEYS,
        RESOLUTIONS,
    ],
    envelope: "conversations",
    record: RECORD,
    dedupe: Dedupe::NewestCopy,
    partitioning: Partitioning::RecordDay {
        column: "conversation_date",
        time_column: "conversation_start",
    },
    source: &AnalyticsDetails,
    id_refs: ID_REFS,
};

/// Columns of this dataset's tables that hold ids a reference table names.
const ID_REFS: &[IdRef] = &[
    IdRef::new(SEGMENTS, "queue_id", &reference::QUEUES_DATASET),
    IdRef::new(SEGMENTS, "wrap_up_code", &reference::WRAPUP_CODES_DATASET),
    IdRef::new(PARTICIPANTS, "user_id", &reference::USERS_DATASET),
    IdRef::new(CONVERSATIONS, "division_ids", &reference::DIVISIONS_DATASET),
];

/// A conversation record's id and start (what the client filters and deduplicates on).
pub const RECORD: RecordSpec = RecordSpec {
    name: "conversation",
    id: "conversationId",
    time: Some("conversationStart"),
    end: Some("conversationEnd"),
};

/// Conversation details jobs up to the data lake's availability date, the synchronous query
/// after it ([`Mode`]).
pub struct AnalyticsDetails;

#[async_trait]
impl Source for AnalyticsDetails {
    async fn plan(
        &self,
        client: &GenesysClient,
        interval: Interval,
        mode: Mode,
    ) -> Result<Planned, GenesysError> {
        let plan = client.plan(interval, mode).await?;
        let client = client.clone();
        Ok(Planned {
            paths: plan.paths().to_string(),
            data_availability_date: plan.data_availability_date,
            start: Box::new(move || client.extract(plan)),
        })
    }
}

pub const CONVERSATIONS: Table = Table::of(&CONVERSATIONS_DEF);
pub const PARTICIPANTS: Table = Table::of(&PARTICIPANTS_DEF);
pub const PARTICIPANT_ATTRIBUTES: Table = Table::of(&PARTICIPANT_ATTRIBUTES_DEF);
pub const SESSIONS: Table = Table::of(&SESSIONS_DEF);
pub const FLOW_OUTCOMES: Table = Table::of(&FLOW_OUTCOMES_DEF);
pub const SEGMENTS: Table = Table::of(&SEGMENTS_DEF);
pub const SEGMENT_PROPERTIES: Table = Table::of(&SEGMENT_PROPERTIES_DEF);
pub const SCORED_AGENTS: Table = Table::of(&SCORED_AGENTS_DEF);
pub const SESSION_METRICS: Table = Table::of(&SESSION_METRICS_DEF);
pub const MEDIA_ENDPOINT_STATS: Table = Table::of(&MEDIA_ENDPOINT_STATS_DEF);
pub const PROPOSED_AGENTS: Table = Table::of(&PROPOSED_AGENTS_DEF);
pub const AGENT_GROUPS: Table = Table::of(&AGENT_GROUPS_DEF);
pub const EVALUATIONS: Table = Table::of(&EVALUATIONS_DEF);
pub const SURVEYS: Table = Table::of(&SURVEYS_DEF);
pub const RESOLUTIONS: Table = Table::of(&RESOLUTIONS_DEF);

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

/// A child table of this dataset.
#[allow(clippy::too_many_arguments)]
const fn child(
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
    TableSpec::child(
        &DATASET,
        pos,
        name,
        description,
        model,
        source,
        parent,
        keys,
        index,
        fields,
    )
}

static CONVERSATIONS_DEF: TableDef = TableDef::new(TableSpec {
    dataset: &DATASET,
    pos: 0,
    name: "conversations",
    description: "One row per conversation (AnalyticsConversation).",
    model: "AnalyticsConversation",
    source: "",
    parent: None,
    keys: &[],
    index: None,
    fields: fields::CONVERSATION,
    lead: &["conversationId", "conversationStart", "conversationEnd"],
    required: &["conversationId", "conversationStart"],
    free_text: &[],
    distinct: &["conversationId"],
    children: &[
        ("participants", PARTICIPANTS),
        ("evaluations", EVALUATIONS),
        ("surveys", SURVEYS),
        ("resolutions", RESOLUTIONS),
    ],
    flatten: None,
    map: None,
    extra: true,
    raw: true,
});

static PARTICIPANTS_DEF: TableDef = TableDef::new(TableSpec {
    lead: &["participantId"],
    free_text: &["participantName"],
    distinct: &["participantId"],
    children: &[("sessions", SESSIONS)],
    map: Some(("attributes", PARTICIPANT_ATTRIBUTES)),
    ..child(
        1,
        "participants",
        "One row per participant of a conversation (AnalyticsParticipant).",
        "AnalyticsParticipant",
        "participants[]",
        CONVERSATIONS,
        CONV_KEYS,
        "participant_index",
        fields::PARTICIPANT,
    )
});

static PARTICIPANT_ATTRIBUTES_DEF: TableDef = TableDef::new(TableSpec {
    free_text: &["value"],
    // A map entry is a name and a string: nothing else to keep.
    extra: false,
    ..child(
        2,
        "participant_attributes",
        "Participant attributes (custom data set by flows and scripts), one row per \
         entry; only async job results carry them.",
        "AnalyticsParticipant.attributes",
        "participants[].attributes{}",
        PARTICIPANTS,
        PART_KEYS,
        "attribute_index",
        ATTRIBUTE,
    )
});

static SESSIONS_DEF: TableDef = TableDef::new(TableSpec {
    lead: &["sessionId", "mediaType"],
    // A SIP Call-ID is unique per call leg: a dictionary would only be hashed and dropped.
    distinct: &["sessionId", "protocolCallId"],
    children: &[
        ("segments", SEGMENTS),
        ("metrics", SESSION_METRICS),
        ("mediaEndpointStats", MEDIA_ENDPOINT_STATS),
        ("proposedAgents", PROPOSED_AGENTS),
        ("agentGroups", AGENT_GROUPS),
    ],
    flatten: Some(Flatten {
        json: "flow",
        prefix: "flow_",
        fields: fields::FLOW,
        children: &[("outcomes", FLOW_OUTCOMES)],
    }),
    ..child(
        3,
        "sessions",
        "One row per session of a participant (AnalyticsSession), with the IVR \
         flow (AnalyticsFlow) flattened into flow_* columns.",
        "AnalyticsSession",
        "participants[].sessions[]",
        PARTICIPANTS,
        PART_KEYS,
        "session_index",
        fields::SESSION,
    )
});

static FLOW_OUTCOMES_DEF: TableDef = TableDef::new(child(
    4,
    "flow_outcomes",
    "Outcomes of a session's IVR flow (AnalyticsFlowOutcome).",
    "AnalyticsFlowOutcome",
    "participants[].sessions[].flow.outcomes[]",
    SESSIONS,
    SESS_KEYS,
    "outcome_index",
    fields::FLOW_OUTCOME,
));

static SEGMENTS_DEF: TableDef = TableDef::new(TableSpec {
    lead: &["segmentStart", "segmentEnd", "segmentType"],
    free_text: &["subject", "wrapUpNote"],
    children: &[
        ("properties", SEGMENT_PROPERTIES),
        ("scoredAgents", SCORED_AGENTS),
    ],
    ..child(
        5,
        "segments",
        "One row per segment of a session (AnalyticsConversationSegment).",
        "AnalyticsConversationSegment",
        "participants[].sessions[].segments[]",
        SESSIONS,
        SESS_KEYS,
        "segment_index",
        fields::CONVERSATION_SEGMENT,
    )
});

static SEGMENT_PROPERTIES_DEF: TableDef = TableDef::new(TableSpec {
    free_text: &["value"],
    ..child(
        6,
        "segment_properties",
        "Properties of a segment (AnalyticsProperty).",
        "AnalyticsProperty",
        "participants[].sessions[].segments[].properties[]",
        SEGMENTS,
        SEG_KEYS,
        "property_index",
        fields::PROPERTY,
    )
});

static SCORED_AGENTS_DEF: TableDef = TableDef::new(child(
    7,
    "scored_agents",
    "Agents scored by predictive routing for a segment (AnalyticsScoredAgent).",
    "AnalyticsScoredAgent",
    "participants[].sessions[].segments[].scoredAgents[]",
    SEGMENTS,
    SEG_KEYS,
    "scored_agent_index",
    fields::SCORED_AGENT,
));

static SESSION_METRICS_DEF: TableDef = TableDef::new(child(
    8,
    "session_metrics",
    "Metrics of a session (AnalyticsSessionMetric): tAlert, tAnswered, tTalk, \
     tHeld, tAcw, tHandle, nConnected, …; value in milliseconds or a count.",
    "AnalyticsSessionMetric",
    "participants[].sessions[].metrics[]",
    SESSIONS,
    SESS_KEYS,
    "metric_index",
    fields::SESSION_METRIC,
));

static MEDIA_ENDPOINT_STATS_DEF: TableDef = TableDef::new(child(
    9,
    "media_endpoint_stats",
    "Media quality statistics of a session's endpoint (AnalyticsMediaEndpointStat).",
    "AnalyticsMediaEndpointStat",
    "participants[].sessions[].mediaEndpointStats[]",
    SESSIONS,
    SESS_KEYS,
    "stat_index",
    fields::MEDIA_ENDPOINT_STAT,
));

static PROPOSED_AGENTS_DEF: TableDef = TableDef::new(child(
    10,
    "proposed_agents",
    "Agents proposed by routing for a session (AnalyticsProposedAgent).",
    "AnalyticsProposedAgent",
    "participants[].sessions[].proposedAgents[]",
    SESSIONS,
    SESS_KEYS,
    "proposed_agent_index",
    fields::PROPOSED_AGENT,
));

static AGENT_GROUPS_DEF: TableDef = TableDef::new(child(
    11,
    "agent_groups",
    "Agent groups of a session (AnalyticsAgentGroup).",
    "AnalyticsAgentGroup",
    "participants[].sessions[].agentGroups[]",
    SESSIONS,
    SESS_KEYS,
    "agent_group_index",
    fields::AGENT_GROUP,
));

static EVALUATIONS_DEF: TableDef = TableDef::new(child(
    12,
    "evaluations",
    "Quality evaluations of a conversation (AnalyticsEvaluation).",
    "AnalyticsEvaluation",
    "evaluations[]",
    CONVERSATIONS,
    CONV_KEYS,
    "evaluation_index",
    fields::EVALUATION,
));

static SURVEYS_DEF: TableDef = TableDef::new(child(
    13,
    "surveys",
    "Surveys of a conversation (AnalyticsSurvey).",
    "AnalyticsSurvey",
    "surveys[]",
    CONVERSATIONS,
    CONV_KEYS,
    "survey_index",
    fields::SURVEY,
));

static RESOLUTIONS_DEF: TableDef = TableDef::new(child(
    14,
    "resolutions",
    "Resolutions of a conversation (AnalyticsResolution).",
    "AnalyticsResolution",
    "resolutions[]",
    CONVERSATIONS,
    CONV_KEYS,
    "resolution_index",
    fields::RESOLUTION,
));

//! Reference data: a snapshot per run of the entities that name the conversations' ids: users
//! (every state), queues, wrap-up codes (deleted ones too), divisions (deleted ones too),
//! presence definitions, skills, languages, groups (`API.md` "Reference data").
//!
//! Each table is a dataset of its own (one root table, one listing, committed whole): a 403 on
//! one listing fails that table for the run and leaves the others alone. `--datasets reference`
//! names them all ([`GROUP`]). They are partitioned `snapshot_date` (UTC date of the run): a
//! rerun the same day replaces that day's snapshot, and the `<table>_latest` views (newest row
//! per id across snapshots) keep the last name of an entity deleted since.
//!
//! Records are the API's entities with three changes made before conversion, so the columns
//! follow from the model's fields: `id` is renamed `<entity>Id` (the id column is `user_id`,
//! `queue_id`, …); an entity listed only by a deleted-entities listing gets `state: "deleted"`
//! when it carries no state; a presence definition's `languageLabels` become `labels` (a JSON
//! string) and its `name` the `en_US` label (any other name it had is kept in `extra` as
//! `definitionName`).

mod fields;

use async_trait::async_trait;
use serde_json::Value;

use super::{Dataset, Dedupe, Partitioning, Planned, RecordSpec, Source};
use crate::genesys::reference::Entity;
use crate::genesys::{GenesysClient, GenesysError, Mode};
use crate::interval::Interval;
use crate::tables::schema::{Flatten, Table, TableDef, TableSpec};
use fields as f;

/// The name `--datasets` accepts for all of them.
pub const GROUP: &str = "reference";

/// The partition column of every reference table.
pub const SNAPSHOT_DATE: &str = "snapshot_date";

const ENVELOPE: &str = "entities";

/// A `division` object, flattened into `division_id`, `division_name`, `division_self_uri`.
const DIVISION: Option<Flatten> = Some(Flatten {
    json: "division",
    prefix: "division_",
    fields: f::DIVISION_REF,
    children: &[],
});

/// A reference table's spec: one row per entity, its id first.
const fn spec(
    dataset: &'static Dataset,
    name: &'static str,
    description: &'static str,
    model: &'static str,
    fields: &'static [crate::tables::schema::Field],
    lead: &'static [&'static str],
    flatten: Option<Flatten>,
) -> TableSpec {
    TableSpec {
        dataset,
        pos: 0,
        name,
        description,
        model,
        source: "",
        parent: None,
        keys: &[],
        index: None,
        fields,
        lead,
        required: &[],
        free_text: &["name", "description", "labels"],
        distinct: &["id"],
        children: &[],
        flatten,
        map: None,
        extra: true,
        raw: false,
    }
}

macro_rules! reference_table {
    ($def:ident, $table:ident, $ds:ident, $name:literal, $id:literal, $model:literal, $fields:expr, $flatten:expr, $desc:literal, $ds_desc:literal) => {
        static $def: TableDef = TableDef::new(spec(
            &$ds,
            $name,
            $desc,
            $model,
            $fields,
            &[$id, "name", "state"],
            $flatten,
        ));
        pub const $table: Table = Table::of(&$def);
        pub static $ds: Dataset = Dataset {
            name: $name,
            description: $ds_desc,
            tables: &[$table],
            envelope: ENVELOPE,
            record: RecordSpec {
                name: $name,
                id: $id,
                time: None,
                end: None,
            },
            dedupe: Dedupe::NewestCopy,
            partitioning: Partitioning::RunDate {
                column: SNAPSHOT_DATE,
            },
            source: &Listing($name),
            id_refs: &[],
        };
    };
}

reference_table!(
    USERS_DEF,
    USERS,
    USERS_DATASET,
    "users",
    "userId",
    "User",
    f::USER,
    DIVISION,
    "Users of every state (active, inactive, deleted), one row per user and snapshot (User).",
    "Users (GET /api/v2/users?state=any), a snapshot per run"
);
reference_table!(
    QUEUES_DEF,
    QUEUES,
    QUEUES_DATASET,
    "queues",
    "queueId",
    "Queue",
    f::QUEUE,
    DIVISION,
    "Routing queues, one row per queue and snapshot (Queue); deleted queues cannot be listed.",
    "Routing queues (GET /api/v2/routing/queues), a snapshot per run"
);
reference_table!(
    WRAPUP_CODES_DEF, WRAPUP_CODES, WRAPUP_CODES_DATASET, "wrapup_codes", "wrapupCodeId",
    "WrapupCode", f::WRAPUP_CODE, DIVISION,
    "Wrap-up codes, one row per code and snapshot (WrapupCode); deleted ones (from the \
     division-views search) have state deleted.",
    "Wrap-up codes (GET /api/v2/routing/wrapupcodes, deleted ones from …/divisionviews), a snapshot per run"
);
reference_table!(
    DIVISIONS_DEF,
    DIVISIONS,
    DIVISIONS_DATASET,
    "divisions",
    "divisionId",
    "AuthzDivision",
    f::DIVISION,
    None,
    "Authorization divisions, one row per division and snapshot (AuthzDivision); soft-deleted \
     ones (GET /api/v2/authorization/divisions/deleted) have state deleted.",
    "Divisions (GET /api/v2/authorization/divisions and …/deleted), a snapshot per run"
);
reference_table!(
    PRESENCE_DEFINITIONS_DEF,
    PRESENCE_DEFINITIONS,
    PRESENCE_DEFINITIONS_DATASET,
    "presence_definitions",
    "presenceDefinitionId",
    "OrganizationPresenceDefinition",
    f::PRESENCE_DEFINITION,
    None,
    "Organization presence definitions, active and deactivated, one row per definition and \
     snapshot (OrganizationPresenceDefinition); name is the en_US label, labels all of them.",
    "Presence definitions (GET /api/v2/presence/definitions), a snapshot per run"
);
reference_table!(
    SKILLS_DEF,
    SKILLS,
    SKILLS_DATASET,
    "skills",
    "skillId",
    "RoutingSkill",
    f::SKILL,
    DIVISION,
    "Routing skills, one row per skill and snapshot (RoutingSkill).",
    "Routing skills (GET /api/v2/routing/skills), a snapshot per run"
);
reference_table!(
    LANGUAGES_DEF,
    LANGUAGES,
    LANGUAGES_DATASET,
    "languages",
    "languageId",
    "Language",
    f::LANGUAGE,
    None,
    "Routing languages, one row per language and snapshot (Language).",
    "Routing languages (GET /api/v2/routing/languages), a snapshot per run"
);
reference_table!(
    GROUPS_DEF,
    GROUPS,
    GROUPS_DATASET,
    "groups",
    "groupId",
    "Group",
    f::GROUP,
    None,
    "Groups, one row per group and snapshot (Group).",
    "Groups (GET /api/v2/groups), a snapshot per run"
);

/// Every reference dataset (what `--datasets reference` means).
pub static ALL: &[&Dataset] = &[
    &USERS_DATASET,
    &QUEUES_DATASET,
    &WRAPUP_CODES_DATASET,
    &DIVISIONS_DATASET,
    &PRESENCE_DEFINITIONS_DATASET,
    &SKILLS_DATASET,
    &LANGUAGES_DATASET,
    &GROUPS_DATASET,
];

/// The id column of a reference table (`queues` → `queue_id`).
pub fn id_column(table: Table) -> Option<String> {
    ALL.iter()
        .find(|d| d.tables.first() == Some(&table))
        .map(|d| crate::tables::schema::snake_case(d.record.id))
}

/// The entity as a record of its table (see the module docs).
fn shape(dataset: &str, e: &Entity) -> Value {
    let mut v = e.json.clone();
    let Value::Object(map) = &mut v else {
        return v;
    };
    let id_name = ALL
        .iter()
        .find(|d| d.name == dataset)
        .map(|d| d.record.id)
        .unwrap_or("id");
    if let Some(id) = map.remove("id") {
        map.insert(id_name.to_string(), id);
    }
    if let Some(state) = e.implied_state {
        map.entry("state").or_insert_with(|| Value::from(state));
    }
    if let Some(labels) = map.remove("languageLabels") {
        let en = labels.get("en_US").cloned();
        map.insert("labels".into(), Value::from(labels.to_string()));
        if let Some(en) = en {
            if let Some(old) = map.insert("name".into(), en.clone()) {
                if old != en {
                    map.insert("definitionName".into(), old);
                }
            }
        }
    }
    v
}

/// The listing(s) of one reference table (by name); the interval and mode do not apply: a
/// run takes one snapshot.
pub struct Listing(pub &'static str);

#[async_trait]
impl Source for Listing {
    async fn plan(
        &self,
        client: &GenesysClient,
        _interval: Interval,
        _mode: Mode,
    ) -> Result<Planned, GenesysError> {
        let (client, table) = (client.clone(), self.0);
        Ok(Planned {
            paths: "listing".into(),
            data_availability_date: None,
            start: Box::new(move || client.reference_extraction(table, ENVELOPE, shape)),
        })
    }
}

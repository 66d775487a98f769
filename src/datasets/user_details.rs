//! The user details dataset: agents' presence and routing-status records (`API.md`, "User
//! details"), from the user-details jobs (history, up to their own availability date) and the
//! user-details query (after it), two tables partitioned `status_date` (UTC date of the record's
//! start).
//!
//! A day's partition holds exactly the records that start in it, each once: the API returns a
//! record from every interval it overlaps (a status across midnight comes back for both days,
//! an OFFLINE of 50 days for each of them), so extracting day D asks for D and keeps the records
//! that start in it; the client merges copies by key, presence (`user_id`, `start_time`,
//! `system_presence`, `organization_presence_id`) and routing (`user_id`, `start_time`,
//! `routing_status`), not by user and start alone (a presence change and a routing change at the
//! same instant are two records), the freshest copy winning (an open record gains `end_time`).
//!
//! Each kind of record is a row of its own root table: the source yields a page of flat presence
//! records and one of flat routing-status records ([`crate::page::PageMeta::root`]).

use async_trait::async_trait;
use bytes::Bytes;

use super::{Dataset, Dedupe, IdRef, Partitioning, Planned, RecordSpec, Source};
use crate::genesys::{Extraction, GenesysClient, GenesysError, Mode};
use crate::interval::Interval;
use crate::page::{Page, PageOrigin};
use crate::tables::schema::{Field, Table, TableDef, TableSpec, Ty};

const NAME: &str = "user_details";
/// The envelope key of the pages the source yields (the API's own list key).
const ENVELOPE: &str = "userDetails";

/// The dataset (registered in [`super::ALL`]).
pub static DATASET: Dataset = Dataset {
    name: NAME,
    description: "Agents' presence and routing-status history (analytics user details jobs and \
                  query), one partition per UTC day of the records' start",
    tables: &[USER_PRESENCE, USER_ROUTING_STATUS],
    envelope: ENVELOPE,
    record: RECORD,
    dedupe: Dedupe::NewestCopy,
    partitioning: Partitioning::RowDay {
        column: "status_date",
        time_column: "start_time",
    },
    source: &UserDetailsSource,
    id_refs: ID_REFS,
};

/// Columns holding ids a reference table names (counted in the run summary when its snapshot
/// does not list them).
const ID_REFS: &[IdRef] = &[
    IdRef::new(USER_PRESENCE, "user_id", &super::reference::USERS_DATASET),
    IdRef::new(
        USER_PRESENCE,
        "organization_presence_id",
        &super::reference::PRESENCE_DEFINITIONS_DATASET,
    ),
    IdRef::new(
        USER_ROUTING_STATUS,
        "user_id",
        &super::reference::USERS_DATASET,
    ),
];

/// A status record's user and start (the client merges on the full key, see the module docs).
pub const RECORD: RecordSpec = RecordSpec {
    name: "status record",
    id: "userId",
    time: Some("startTime"),
    end: Some("endTime"),
};

pub const USER_PRESENCE: Table = Table::of(&USER_PRESENCE_DEF);
pub const USER_ROUTING_STATUS: Table = Table::of(&USER_ROUTING_STATUS_DEF);

const PRESENCE_FIELDS: &[Field] = &[
    Field::new("userId", Ty::Str, "The agent (users.user_id)"),
    Field::new("startTime", Ty::Time, "When the presence began; its UTC date is the partition"),
    Field::new(
        "endTime",
        Ty::Time,
        "When it ended; null while the record is still open (it gains an end later)",
    ),
    Field::new(
        "systemPresence",
        Ty::Str,
        "AVAILABLE, AWAY, BUSY, OFFLINE, IDLE, ON_QUEUE, MEAL, TRAINING, MEETING, BREAK (open: other values kept as they come)",
    ),
    Field::new(
        "organizationPresenceId",
        Ty::Str,
        "The organization's presence definition (presence_definitions.presence_definition_id)",
    ),
];

const ROUTING_FIELDS: &[Field] = &[
    Field::new("userId", Ty::Str, "The agent (users.user_id)"),
    Field::new("startTime", Ty::Time, "When the status began; its UTC date is the partition"),
    Field::new(
        "endTime",
        Ty::Time,
        "When it ended; null while the record is still open (it gains an end later)",
    ),
    Field::new(
        "routingStatus",
        Ty::Str,
        "OFF_QUEUE, IDLE, INTERACTING, NOT_RESPONDING, COMMUNICATING (open: other values kept as they come)",
    ),
];

static USER_PRESENCE_DEF: TableDef = TableDef::new(TableSpec {
    dataset: &DATASET,
    pos: 0,
    name: "user_presence",
    description: "One row per presence record of an agent (AnalyticsUserPresenceRecord), in the \
                  partition of the day it started.",
    model: "AnalyticsUserPresenceRecord",
    source: "",
    parent: None,
    keys: &[],
    index: None,
    fields: PRESENCE_FIELDS,
    lead: &["userId", "startTime", "endTime"],
    required: &["userId", "startTime"],
    free_text: &[],
    distinct: &[],
    children: &[],
    flatten: None,
    map: None,
    extra: true,
    raw: false,
});

static USER_ROUTING_STATUS_DEF: TableDef = TableDef::new(TableSpec {
    dataset: &DATASET,
    pos: 1,
    name: "user_routing_status",
    description: "One row per routing-status record of an agent (AnalyticsRoutingStatusRecord), \
                  in the partition of the day it started.",
    model: "AnalyticsRoutingStatusRecord",
    source: "",
    parent: None,
    keys: &[],
    index: None,
    fields: ROUTING_FIELDS,
    lead: &["userId", "startTime", "endTime"],
    required: &["userId", "startTime"],
    free_text: &[],
    distinct: &[],
    children: &[],
    flatten: None,
    map: None,
    extra: true,
    raw: false,
});

/// User-details jobs up to their availability date, the query after it ([`Mode`]).
pub struct UserDetailsSource;

#[async_trait]
impl Source for UserDetailsSource {
    async fn plan(
        &self,
        client: &GenesysClient,
        interval: Interval,
        mode: Mode,
    ) -> Result<Planned, GenesysError> {
        let plan = client.plan_user_details(interval, mode).await?;
        let client = client.clone();
        Ok(Planned {
            paths: plan.paths().to_string(),
            data_availability_date: plan.data_availability_date,
            start: Box::new(move || {
                let cleanup = client.job_cleanup();
                let stats = cleanup.stats();
                let c = cleanup.clone();
                let pages = async_stream::try_stream! {
                    let details = client.extract_user_details(&plan, &c).await?;
                    let what = plan.interval.to_genesys();
                    for (table, objects) in [
                        (USER_PRESENCE, details.presence_objects()),
                        (USER_ROUTING_STATUS, details.routing_objects()),
                    ] {
                        if objects.is_empty() {
                            continue;
                        }
                        let body = format!("{{\"{ENVELOPE}\":[{}]}}", objects.join(","));
                        let origin = PageOrigin::new(format!("{} {what}", table.name()));
                        let mut page = Page::parse(Bytes::from(body), origin, ENVELOPE)?;
                        page.meta.root = Some(table.name());
                        yield page;
                    }
                };
                Extraction {
                    pages: Box::pin(pages),
                    stats,
                    cleanup,
                    warnings: Default::default(),
                }
            }),
        })
    }
}

//! Reference data (`API.md` "Reference data"): the listings that give every id in the
//! conversation tables a name: users (every state), queues, wrap-up codes (deleted ones through
//! the division-views search), divisions (deleted ones through their own endpoint), presence
//! definitions (unpaged; deactivated ones a second call), skills, languages, groups.
//!
//! Paging follows `pageCount`/`nextUri`, never a short page: a pageSize over the endpoint's cap
//! is silently capped. Requests go through the client's limiter and retries. A 403 on a
//! required listing fails its table naming the permission; on an optional one (deleted codes,
//! deleted divisions) the table is complete but for those, with a warning.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::http::{Request, RequestStats};
use super::{Extraction, GenesysClient, GenesysError, JobCleanup, JobRegistry, Warnings};
use crate::page::{Page, PageOrigin};

/// The endpoints.
pub mod paths {
    pub const USERS: &str = "/api/v2/users";
    pub const QUEUES: &str = "/api/v2/routing/queues";
    pub const WRAPUP_CODES: &str = "/api/v2/routing/wrapupcodes";
    pub const WRAPUP_CODE_SEARCH: &str = "/api/v2/routing/wrapupcodes/divisionviews";
    pub const DIVISIONS: &str = "/api/v2/authorization/divisions";
    pub const DELETED_DIVISIONS: &str = "/api/v2/authorization/divisions/deleted";
    pub const PRESENCE_DEFINITIONS: &str = "/api/v2/presence/definitions";
    pub const SKILLS: &str = "/api/v2/routing/skills";
    pub const LANGUAGES: &str = "/api/v2/routing/languages";
    pub const GROUPS: &str = "/api/v2/groups";
}

/// One listing a reference table is read from.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub path: &'static str,
    pub query: &'static [(&'static str, &'static str)],
    /// Page-numbered (`EntityListing`), or one unpaged response.
    pub paged: bool,
    /// The permission the API asks for (for the message of a 403), if any.
    pub permission: Option<&'static str>,
    /// Without it the table is incomplete: a 403 fails the table. Optional sources only add
    /// what the others cannot list (deleted entities), and a 403 there is a warning.
    pub required: bool,
    /// The `state` recorded for its entities when they carry none (`deleted`).
    pub state: Option<&'static str>,
    /// What the source lists, for messages.
    pub what: &'static str,
}

const fn src(
    path: &'static str,
    query: &'static [(&'static str, &'static str)],
    permission: Option<&'static str>,
    what: &'static str,
) -> Source {
    Source {
        path,
        query,
        paged: true,
        permission,
        required: true,
        state: None,
        what,
    }
}

/// Where each reference table comes from, in the order they are read.
pub fn sources(table: &str) -> &'static [Source] {
    const USERS: &[Source] = &[src(
        paths::USERS,
        &[("state", "any")],
        None,
        "users (every state)",
    )];
    const QUEUES: &[Source] = &[src(
        paths::QUEUES,
        &[],
        Some("routing:queue:view"),
        "queues",
    )];
    const WRAPUP_CODES: &[Source] = &[
        src(
            paths::WRAPUP_CODES,
            &[],
            Some("routing:wrapupCode:view"),
            "wrap-up codes",
        ),
        Source {
            required: false,
            state: Some("deleted"),
            ..src(
                paths::WRAPUP_CODE_SEARCH,
                &[("includeState", "Deleted")],
                Some("routing:wrapupCode:search"),
                "deleted wrap-up codes",
            )
        },
    ];
    const DIVISIONS: &[Source] = &[
        src(paths::DIVISIONS, &[], None, "divisions"),
        Source {
            required: false,
            state: Some("deleted"),
            ..src(
                paths::DELETED_DIVISIONS,
                &[],
                Some("authorization:divisionDeleted:view"),
                "deleted divisions",
            )
        },
    ];
    const PRESENCE: &[Source] = &[
        Source {
            paged: false,
            ..src(
                paths::PRESENCE_DEFINITIONS,
                &[("localeCode", "ALL"), ("deactivated", "false")],
                Some("presence:presenceDefinition:view"),
                "presence definitions",
            )
        },
        Source {
            paged: false,
            ..src(
                paths::PRESENCE_DEFINITIONS,
                &[("localeCode", "ALL"), ("deactivated", "true")],
                Some("presence:presenceDefinition:view"),
                "deactivated presence definitions",
            )
        },
    ];
    const SKILLS: &[Source] = &[src(
        paths::SKILLS,
        &[],
        Some("routing:skill:view"),
        "skills",
    )];
    const LANGUAGES: &[Source] = &[src(paths::LANGUAGES, &[], None, "languages")];
    const GROUPS: &[Source] = &[src(paths::GROUPS, &[], None, "groups")];
    match table {
        "users" => USERS,
        "queues" => QUEUES,
        "wrapup_codes" => WRAPUP_CODES,
        "divisions" => DIVISIONS,
        "presence_definitions" => PRESENCE,
        "skills" => SKILLS,
        "languages" => LANGUAGES,
        "groups" => GROUPS,
        _ => &[],
    }
}

/// The permissions the reference dataset asks for (required first), for docs and messages.
pub fn permissions(table: &str) -> Vec<(&'static str, bool)> {
    sources(table)
        .iter()
        .filter_map(|s| s.permission.map(|p| (p, s.required)))
        .fold(Vec::new(), |mut v, p| {
            if !v.contains(&p) {
                v.push(p);
            }
            v
        })
}

/// Why a reference table could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    #[error("reference table {table}: the OAuth client lacks the permission {permission} to list {what} (GET {path}); grant it to the client's role, or leave the reference dataset out (--datasets)")]
    MissingPermission {
        table: String,
        what: &'static str,
        path: &'static str,
        permission: String,
    },
    #[error("reference table {table}: {source}")]
    Genesys {
        table: String,
        #[source]
        source: GenesysError,
    },
    #[error("reference table {table}: GET {path} page {page}: {reason}")]
    Paging {
        table: String,
        path: &'static str,
        page: u64,
        reason: String,
    },
}

impl ReferenceError {
    pub fn is_transient(&self) -> bool {
        match self {
            ReferenceError::Genesys { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// As the pipeline reports client errors: a missing permission fails its dataset only.
    pub fn into_genesys(self) -> GenesysError {
        match self {
            ReferenceError::MissingPermission {
                table,
                what,
                path,
                permission,
            } => GenesysError::MissingPermission {
                what: format!("reference table {table}: listing {what} (GET {path})"),
                permission,
            },
            ReferenceError::Genesys { source, .. } => source,
            e @ ReferenceError::Paging { .. } => GenesysError::Decode {
                what: "reference listing".into(),
                reason: e.to_string(),
            },
        }
    }
}

/// One entity as listed, with the state its source implies (deleted) when it carries none.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub json: Value,
    pub implied_state: Option<&'static str>,
}

/// A reference table as read.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    pub entities: Vec<Entity>,
    /// Optional listings refused (403): what the table lacks, for the summary.
    pub warnings: Vec<String>,
    /// Entities listed twice (across pages or sources), kept once.
    pub duplicates: u64,
    pub requests: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    entities: Option<Vec<Value>>,
    #[serde(default)]
    page_count: Option<u64>,
    #[serde(default)]
    next_uri: Option<String>,
}

/// Pages past this are refused as a runaway listing (100 pages of 500 = 50,000 entities would
/// be the most, at the largest size anyone requests; at 1 entity a page this still allows 10^5).
const MAX_PAGES: u64 = 100_000;

impl GenesysClient {
    /// The listing of `table` for the pipeline: one page (under `envelope`) of its entities,
    /// each turned into a record by `shape`; the warnings of refused optional listings.
    pub fn reference_extraction(
        &self,
        table: &'static str,
        envelope: &'static str,
        shape: fn(&str, &Entity) -> Value,
    ) -> Extraction {
        let stats = Arc::new(RequestStats::default());
        let warnings = Warnings::default();
        let (client, st, warn) = (self.clone(), stats.clone(), warnings.clone());
        let page = async move {
            let listed = client
                .list_reference_with(table, &st)
                .await
                .map_err(ReferenceError::into_genesys)?;
            warn.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(listed.warnings.iter().cloned());
            let records: Vec<Value> = listed.entities.iter().map(|e| shape(table, e)).collect();
            let body =
                serde_json::to_vec(&serde_json::json!({ envelope: records })).map_err(|e| {
                    GenesysError::Decode {
                        what: format!("reference table {table}"),
                        reason: e.to_string(),
                    }
                })?;
            Page::parse(
                Bytes::from(body),
                PageOrigin::new(format!("reference listing {table}")),
                envelope,
            )
            .map_err(GenesysError::from)
        };
        Extraction {
            pages: Box::pin(futures::stream::once(page)),
            cleanup: JobCleanup {
                transport: self.transport.clone(),
                stats: stats.clone(),
                jobs: JobRegistry::default(),
            },
            stats,
            warnings,
        }
    }

    /// Reads every source of `table`.
    pub async fn list_reference(&self, table: &str) -> Result<Listed, ReferenceError> {
        self.list_reference_with(table, &RequestStats::default())
            .await
    }

    async fn list_reference_with(
        &self,
        table: &str,
        stats: &RequestStats,
    ) -> Result<Listed, ReferenceError> {
        let mut out = Listed::default();
        let mut seen: HashSet<String> = HashSet::new();
        for source in sources(table) {
            match self.list_source(table, source, stats).await {
                Ok(entities) => {
                    for json in entities {
                        let id = json.get("id").and_then(Value::as_str).map(str::to_string);
                        if let Some(id) = id {
                            if !seen.insert(id) {
                                out.duplicates += 1;
                                continue;
                            }
                        }
                        out.entities.push(Entity {
                            json,
                            implied_state: source.state,
                        });
                    }
                }
                Err(ReferenceError::MissingPermission { permission, .. }) if !source.required => {
                    tracing::warn!(table, path = source.path, %permission, "optional reference listing refused");
                    out.warnings.push(format!(
                        "{table}: {} not listed: the OAuth client lacks {permission} (GET {})",
                        source.what, source.path
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        out.requests = stats.snapshot().requests;
        Ok(out)
    }

    async fn list_source(
        &self,
        table: &str,
        source: &Source,
        stats: &RequestStats,
    ) -> Result<Vec<Value>, ReferenceError> {
        let size = self.cfg.reference_page_size.max(1).to_string();
        let mut all = Vec::new();
        let mut page: u64 = 1;
        loop {
            let mut query: Vec<(&str, String)> = source
                .query
                .iter()
                .map(|(k, v)| (*k, v.to_string()))
                .collect();
            if source.paged {
                query.push(("pageSize", size.clone()));
                query.push(("pageNumber", page.to_string()));
            }
            let req = Request {
                method: Method::GET,
                path: source.path.to_string(),
                query,
                body: None,
                what: format!("listing {} (page {page})", source.what),
                idempotent: true,
            };
            let body = match self.transport.send(&req, stats).await {
                Ok(b) => b,
                Err(GenesysError::Api {
                    status: 403,
                    message,
                    ..
                }) => {
                    let permission = super::error::missing_permission(&message)
                        .map(str::to_string)
                        .or(source.permission.map(str::to_string))
                        .unwrap_or_else(|| "(not named by the API)".into());
                    return Err(ReferenceError::MissingPermission {
                        table: table.to_string(),
                        what: source.what,
                        path: source.path,
                        permission,
                    });
                }
                Err(source) => {
                    return Err(ReferenceError::Genesys {
                        table: table.to_string(),
                        source,
                    })
                }
            };
            stats.page();
            let this_page = page;
            let bad = move |reason: String| ReferenceError::Paging {
                table: table.to_string(),
                path: source.path,
                page: this_page,
                reason,
            };
            let env: Envelope = serde_json::from_slice(&body)
                .map_err(|e| bad(format!("not an entity listing: {e}")))?;
            let entities = env
                .entities
                .ok_or_else(|| bad("no `entities` in the response".into()))?;
            let empty = entities.is_empty();
            all.extend(entities);
            if !source.paged {
                return Ok(all);
            }
            // pageCount decides; without it, nextUri does. An empty page ends a listing whose
            // count is stale (entities deleted while paging).
            let more = match env.page_count {
                Some(n) => page < n,
                None => env.next_uri.is_some(),
            };
            if !more || empty {
                return Ok(all);
            }
            page += 1;
            if page > MAX_PAGES {
                return Err(bad(format!("more than {MAX_PAGES} pages")));
            }
        }
    }
}

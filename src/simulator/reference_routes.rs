//! The reference-data endpoints (`API.md` "Reference data"): the `EntityListing` envelope and
//! page-number paging of the real API (a pageSize over the cap is silently capped, `nextUri`
//! absent on the last page), the unpaged presence definitions, and 403s for the permissions
//! the client is set to lack.

use std::collections::HashMap;

use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::reference::{self as universe, Listing};
use super::server::{bad_request, error, gate, json_response, Shared};
use crate::genesys::reference::paths;

pub fn routes() -> Router<Shared> {
    let list = |listing: Listing, filter: Option<&'static str>| {
        move |s: AxState<Shared>, h: HeaderMap, q: Query<HashMap<String, String>>| {
            listing_handler(s, h, q, listing, filter)
        }
    };
    Router::new()
        .route(paths::USERS, get(list(Listing::Users, Some("state"))))
        .route(paths::QUEUES, get(list(Listing::Queues, None)))
        .route(paths::WRAPUP_CODES, get(list(Listing::WrapupCodes, None)))
        .route(
            paths::WRAPUP_CODE_SEARCH,
            get(list(Listing::WrapupCodeSearch, Some("includeState"))),
        )
        .route(paths::DIVISIONS, get(list(Listing::Divisions, None)))
        .route(
            paths::DELETED_DIVISIONS,
            get(list(Listing::DeletedDivisions, None)),
        )
        .route(paths::SKILLS, get(list(Listing::Skills, None)))
        .route(paths::LANGUAGES, get(list(Listing::Languages, None)))
        .route(paths::GROUPS, get(list(Listing::Groups, None)))
        .route(paths::PRESENCE_DEFINITIONS, get(presence_definitions))
}

fn endpoint_name(listing: Listing) -> &'static str {
    match listing {
        Listing::Users => "ref_users",
        Listing::Queues => "ref_queues",
        Listing::WrapupCodes => "ref_wrapup_codes",
        Listing::WrapupCodeSearch => "ref_wrapup_code_search",
        Listing::Divisions => "ref_divisions",
        Listing::DeletedDivisions => "ref_deleted_divisions",
        Listing::Skills => "ref_skills",
        Listing::Languages => "ref_languages",
        Listing::Groups => "ref_groups",
    }
}

fn path_of(listing: Listing) -> &'static str {
    match listing {
        Listing::Users => paths::USERS,
        Listing::Queues => paths::QUEUES,
        Listing::WrapupCodes => paths::WRAPUP_CODES,
        Listing::WrapupCodeSearch => paths::WRAPUP_CODE_SEARCH,
        Listing::Divisions => paths::DIVISIONS,
        Listing::DeletedDivisions => paths::DELETED_DIVISIONS,
        Listing::Skills => paths::SKILLS,
        Listing::Languages => paths::LANGUAGES,
        Listing::Groups => paths::GROUPS,
    }
}

/// The real 403 of a missing permission, if the client is set to lack `permission`.
fn forbidden(state: &Shared, permission: Option<&str>) -> Option<Response> {
    let p = permission?;
    state
        .cfg
        .missing_permissions
        .iter()
        .any(|m| m.trim() == p)
        .then(|| {
            error(
                StatusCode::FORBIDDEN,
                "missing.any.permissions",
                &format!(
                    "Unable to perform the requested action. You are missing the following permission(s): [{p}]"
                ),
            )
        })
}

async fn listing_handler(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    listing: Listing,
    filter: Option<&'static str>,
) -> Response {
    if let Err(r) = gate(&state, &headers, endpoint_name(listing)).await {
        return r;
    }
    if let Some(r) = forbidden(&state, listing.permission()) {
        return r;
    }
    let number = |k: &str, default: u64| -> Result<u64, String> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!("{k} must be a positive integer")),
            },
        }
    };
    let (asked, page) = match (number("pageSize", 25), number("pageNumber", 1)) {
        (Ok(s), Ok(n)) => (s, n),
        (Err(m), _) | (_, Err(m)) => return bad_request(&m),
    };
    let filter_value = filter.and_then(|k| q.get(k)).map(String::as_str);
    if let (Listing::Users, Some(v)) = (listing, filter_value) {
        if !matches!(v, "active" | "inactive" | "deleted" | "any") {
            return bad_request(&format!("Invalid value for state: {v}"));
        }
    }
    let all = universe::entities(listing, filter_value);
    // Silently capped, never refused (API.md): clients must page by pageCount, not short pages.
    let size = asked.min(u64::from(state.cfg.ref_page_size_cap.max(1)));
    let total = all.len() as u64;
    let page_count = total.div_ceil(size);
    let from = ((page - 1) * size).min(total) as usize;
    let to = (from + size as usize).min(all.len());
    let path = path_of(listing);
    let extra: String = filter
        .zip(filter_value)
        .map(|(k, v)| format!("&{k}={v}"))
        .unwrap_or_default();
    let uri = |n: u64| format!("{path}?pageSize={size}&pageNumber={n}{extra}");
    let mut body = json!({
        "entities": all[from..to],
        "pageSize": size,
        "pageNumber": page,
        "total": total,
        "pageCount": page_count,
        "firstUri": uri(1),
        "selfUri": uri(page),
        "lastUri": uri(page_count.max(1)),
    });
    if page < page_count {
        body["nextUri"] = json!(uri(page + 1));
    }
    if page > 1 {
        body["previousUri"] = json!(uri(page - 1));
    }
    json_response(StatusCode::OK, body.to_string())
}

async fn presence_definitions(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&state, &headers, "ref_presence_definitions").await {
        return r;
    }
    if let Some(r) = forbidden(&state, Some(universe::PRESENCE_PERMISSION)) {
        return r;
    }
    let deactivated = match q.get("deactivated").map(|s| s.to_ascii_lowercase()) {
        None => false,
        Some(s) if s == "true" => true,
        Some(s) if s == "false" => false,
        Some(_) => return bad_request("deactivated must be TRUE or FALSE"),
    };
    let entities: Vec<Value> =
        universe::presence_definitions(deactivated, q.get("localeCode").map(String::as_str));
    let body = json!({
        "total": entities.len(),
        "entities": entities,
        "selfUri": paths::PRESENCE_DEFINITIONS,
    });
    json_response(StatusCode::OK, body.to_string())
}

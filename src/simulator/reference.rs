//! The simulated organization's reference entities (users, queues, wrap-up codes, divisions,
//! presence definitions, skills, languages, groups): the universe every id in the simulated
//! conversations comes from, with the visibility rules `API.md` ("Reference data") documents:
//! inactive and deleted users only under `state=any`; a deleted queue no listing returns;
//! deleted wrap-up codes only through the division-views search; deleted divisions only
//! through `/authorization/divisions/deleted`; deactivated presence definitions only with
//! `deactivated=true`.

use serde_json::{json, Value};

/// The home division (every active entity's division).
pub const DIVISION: &str = "a7b2c1d0-1111-4222-8333-444455556666";
const DIVISION_EMEA: &str = "a7b2c1d0-1111-4222-8333-444455556667";
/// A soft-deleted division: listed only by `/authorization/divisions/deleted`. The deleted
/// queue lived in it, so conversations on that queue carry it in `divisionIds`.
pub const DIVISION_LEGACY: &str = "a7b2c1d0-1111-4222-8333-444455556668";

/// Queues conversations are routed through (id, name). `Retention` was deleted: no listing
/// returns it, so its id never gets a name (the API has no way to list deleted queues).
pub const QUEUES: [(&str, &str); 5] = [
    ("5b6cf3a4-1d1e-4d43-9b39-0f1d2a6f0001", "Sales"),
    ("5b6cf3a4-1d1e-4d43-9b39-0f1d2a6f0002", "Support"),
    ("5b6cf3a4-1d1e-4d43-9b39-0f1d2a6f0003", "Billing"),
    ("5b6cf3a4-1d1e-4d43-9b39-0f1d2a6f0004", "Retention"),
    ("5b6cf3a4-1d1e-4d43-9b39-0f1d2a6f0005", "Technical"),
];
/// The queue no listing returns.
pub const DELETED_QUEUE: &str = "5b6cf3a4-1d1e-4d43-9b39-0f1d2a6f0004";
/// Listed queues no conversation uses (yet).
const IDLE_QUEUES: [(&str, &str); 2] = [
    ("5b6cf3a4-1d1e-4d43-9b39-0f1d2a6f0006", "Escalations"),
    ("5b6cf3a4-1d1e-4d43-9b39-0f1d2a6f0007", "Outbound Campaigns"),
];

/// Wrap-up codes (id, name); the last one is deleted (only the search lists it).
pub const WRAPUPS: [(&str, &str); 5] = [
    (
        "7fb334b0-0e9e-11e4-9191-0800200c9a66",
        "Default Wrap-up Code",
    ),
    ("a1b2c3d4-0000-4000-8000-00000000aaa1", "Resolved"),
    ("a1b2c3d4-0000-4000-8000-00000000aaa2", "Callback scheduled"),
    ("a1b2c3d4-0000-4000-8000-00000000aaa3", "Escalated"),
    (
        "a1b2c3d4-0000-4000-8000-00000000aaa4",
        "Sold – old campaign",
    ),
];
pub const DELETED_WRAPUP: &str = "a1b2c3d4-0000-4000-8000-00000000aaa4";

/// Skills (id, name); conversations request the first.
pub const SKILLS: [(&str, &str); 3] = [
    ("b0b0b0b0-0000-4000-8000-000000000001", "Spanish speaker"),
    ("b0b0b0b0-0000-4000-8000-000000000002", "Premium support"),
    ("b0b0b0b0-0000-4000-8000-000000000003", "Billing disputes"),
];
/// Routing languages (id, name); conversations request the first.
pub const LANGUAGES: [(&str, &str); 3] = [
    ("c1c1c1c1-0000-4000-8000-000000000001", "English"),
    ("c1c1c1c1-0000-4000-8000-000000000002", "Deutsch"),
    ("c1c1c1c1-0000-4000-8000-000000000003", "Español"),
];
const GROUPS: [(&str, &str); 3] = [
    ("d2d2d2d2-0000-4000-8000-000000000001", "Team North"),
    ("d2d2d2d2-0000-4000-8000-000000000002", "Team South"),
    ("d2d2d2d2-0000-4000-8000-000000000003", "Supervisors"),
];

/// Users in the organization; agents in conversations are drawn from all of them.
pub const USER_COUNT: usize = 40;
const FIRST_NAMES: [&str; 10] = [
    "José Müller",
    "王秀英",
    "Zoë Ørsted",
    "Aoife Ní Bhriain",
    "Mohammed Al-Farsi",
    "Łukasz Wiśniewski",
    "Priya Raghunathan",
    "Émilie Dubois",
    "Sam Taylor",
    "Иван Петров",
];

/// The id of user `i` (`i < USER_COUNT`).
pub fn user_id(i: usize) -> String {
    format!("e5e5e5e5-0000-4000-8000-{:012x}", i + 1)
}

/// A user's state: every tenth is inactive, and the one after that deleted.
pub fn user_state(i: usize) -> &'static str {
    match i % 10 {
        7 => "inactive",
        9 => "deleted",
        _ => "active",
    }
}

/// Maps a random draw to one of the users (so records consume the RNG as before).
pub fn user_for(draw: u128) -> String {
    user_id((draw % USER_COUNT as u128) as usize)
}

/// The division a conversation on `queue` belongs to.
pub fn division_of_queue(queue: &str) -> &'static str {
    if queue == DELETED_QUEUE {
        DIVISION_LEGACY
    } else {
        DIVISION
    }
}

/// Presence definitions: (id, system presence, English label, German label, type, deactivated).
pub const PRESENCES: [(&str, &str, &str, &str, &str, bool); 9] = [
    (
        "6a3af858-942f-489d-9700-5f9bcdcdae9b",
        "Available",
        "Available",
        "Verfügbar",
        "System",
        false,
    ),
    (
        "e08eaf1b-ee47-4fa9-a231-1200e284798f",
        "On Queue",
        "On Queue",
        "In Warteschlange",
        "System",
        false,
    ),
    (
        "5e5c5c66-ea97-4e7f-ac41-6424784829f2",
        "Away",
        "Away",
        "Abwesend",
        "System",
        false,
    ),
    (
        "31fe3bac-dea6-44b7-bed7-47f91660a1a0",
        "Busy",
        "Busy",
        "Beschäftigt",
        "System",
        false,
    ),
    (
        "ccf3c10a-aa2c-4845-8e8d-f59fa48c58e5",
        "Offline",
        "Offline",
        "Offline",
        "System",
        false,
    ),
    (
        "3fd96123-badb-4f69-bc03-1b1ccc6d8014",
        "Meal",
        "Meal",
        "Mahlzeit",
        "System",
        false,
    ),
    (
        "a0b1c2d3-0000-4000-8000-00000000f001",
        "Busy",
        "Coaching",
        "Coaching",
        "User",
        false,
    ),
    (
        "a0b1c2d3-0000-4000-8000-00000000f002",
        "Away",
        "Team meeting",
        "Teambesprechung",
        "User",
        false,
    ),
    (
        "a0b1c2d3-0000-4000-8000-00000000f003",
        "Meal",
        "Long lunch",
        "Lange Mittagspause",
        "User",
        true,
    ),
];

/// Which entities a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `/users` with its `state` parameter (active when absent).
    Users,
    Queues,
    WrapupCodes,
    /// `/routing/wrapupcodes/divisionviews` with `includeState`.
    WrapupCodeSearch,
    Divisions,
    DeletedDivisions,
    Skills,
    Languages,
    Groups,
}

impl Listing {
    /// The permission its 403 names (`None`: the API asks for none).
    pub fn permission(self) -> Option<&'static str> {
        match self {
            Listing::Queues => Some("routing:queue:view"),
            Listing::WrapupCodes => Some("routing:wrapupCode:view"),
            Listing::WrapupCodeSearch => Some("routing:wrapupCode:search"),
            Listing::DeletedDivisions => Some("authorization:divisionDeleted:view"),
            Listing::Skills => Some("routing:skill:view"),
            Listing::Users | Listing::Divisions | Listing::Languages | Listing::Groups => None,
        }
    }
}

/// The permission of `/presence/definitions`.
pub const PRESENCE_PERMISSION: &str = "presence:presenceDefinition:view";

fn division_ref(id: &str) -> Value {
    let name = match id {
        DIVISION => "Home",
        DIVISION_EMEA => "EMEA",
        _ => "Legacy",
    };
    json!({"id": id, "name": name, "selfUri": format!("/api/v2/authorization/divisions/{id}")})
}

const CREATED: &str = "2024-03-01T09:00:00.000Z";
const MODIFIED: &str = "2026-10-15T12:30:00.000Z";

fn user(i: usize) -> Value {
    let id = user_id(i);
    let name = if i < FIRST_NAMES.len() {
        FIRST_NAMES[i].to_string()
    } else {
        format!(
            "{} {}",
            FIRST_NAMES[i % FIRST_NAMES.len()],
            i / FIRST_NAMES.len() + 1
        )
    };
    let email = format!("agent{}@example.com", i + 1);
    let mut u = json!({
        "id": id,
        "name": name,
        "division": division_ref(if i % 4 == 3 { DIVISION_EMEA } else { DIVISION }),
        "chat": {"jabberId": format!("{:024x}@example.orgspan.com", i + 1)},
        "department": if i.is_multiple_of(3) { "Customer Care" } else { "Sales" },
        "email": email,
        "primaryContactInfo": [{"address": email, "mediaType": "EMAIL", "type": "PRIMARY"}],
        "addresses": [],
        "state": user_state(i),
        "title": if i.is_multiple_of(8) { "Team Lead" } else { "Agent" },
        "username": email,
        "version": 3 + i as i64,
        "acdAutoAnswer": i.is_multiple_of(5),
        "selfUri": format!("/api/v2/users/{id}"),
    });
    if i > 0 {
        u["manager"] =
            json!({"id": user_id(0), "selfUri": format!("/api/v2/users/{}", user_id(0))});
    }
    if i % 10 != 9 {
        u["dateLastLogin"] = json!("2026-11-30T08:01:02.000Z");
    }
    u
}

fn queue(id: &str, name: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "division": division_ref(DIVISION),
        "description": format!("{name} line"),
        "dateCreated": CREATED,
        "dateModified": MODIFIED,
        "modifiedBy": user_id(0),
        "createdBy": user_id(0),
        "memberCount": 12,
        "userMemberCount": 12,
        "joinedMemberCount": 9,
        "mediaSettings": {"call": {"alertingTimeoutSeconds": 8, "serviceLevel": {"percentage": 0.8, "durationMs": 20000}}},
        "routingRules": [],
        "scoringMethod": "TimestampAndPriority",
        "lastAgentRoutingMode": "Disabled",
        "acwSettings": {"wrapupPrompt": "MANDATORY_TIMEOUT", "timeoutMs": 30000},
        "skillEvaluationMethod": "ALL",
        "autoAnswerOnly": false,
        "enableTranscription": true,
        "enableAudioMonitoring": false,
        "enableManualAssignment": false,
        "callingPartyName": "Example Corp",
        "suppressInQueueCallRecording": false,
        "selfUri": format!("/api/v2/routing/queues/{id}"),
    })
}

fn wrapup(id: &str, name: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "division": division_ref(DIVISION),
        "description": format!("{name} (agent-selected)"),
        "dateCreated": CREATED,
        "dateModified": MODIFIED,
        "createdBy": user_id(0),
        "modifiedBy": user_id(0),
        "selfUri": format!("/api/v2/routing/wrapupcodes/{id}"),
    })
}

fn division(id: &str, name: &str, home: bool) -> Value {
    json!({
        "id": id,
        "name": name,
        "description": format!("{name} business unit"),
        "homeDivision": home,
        "selfUri": format!("/api/v2/authorization/divisions/{id}"),
    })
}

/// A presence definition; `locale` `None` or `ALL` gives every label, else only that one.
fn presence(p: &(&str, &str, &str, &str, &str, bool), locale: Option<&str>) -> Value {
    let (id, system, en, de, ty, deactivated) = *p;
    let mut labels = serde_json::Map::new();
    if matches!(locale, None | Some("ALL") | Some("en_US")) {
        labels.insert("en_US".into(), json!(en));
    }
    if matches!(locale, None | Some("ALL") | Some("de")) {
        labels.insert("de".into(), json!(de));
    }
    let mut v = json!({
        "id": id,
        "type": ty,
        "languageLabels": labels,
        "systemPresence": system,
        "deactivated": deactivated,
        "selfUri": format!("/api/v2/presence/definitions/{id}"),
    });
    if ty == "User" {
        v["name"] = json!(en);
        v["divisionId"] = json!(DIVISION);
    }
    v
}

fn skill(id: &str, name: &str) -> Value {
    json!({
        "id": id, "name": name, "division": division_ref(DIVISION), "dateModified": MODIFIED,
        "state": "active", "version": "2", "selfUri": format!("/api/v2/routing/skills/{id}"),
    })
}

fn language(id: &str, name: &str) -> Value {
    json!({
        "id": id, "name": name, "dateModified": MODIFIED, "state": "active", "version": "1",
        "selfUri": format!("/api/v2/routing/languages/{id}"),
    })
}

fn group(i: usize, id: &str, name: &str) -> Value {
    json!({
        "id": id, "name": name, "description": format!("{name} agents"), "dateModified": MODIFIED,
        "memberCount": 8 + i as i64, "state": "active", "version": 4, "type": "official",
        "visibility": "public", "rulesVisible": false, "rolesEnabled": true, "includeOwners": false,
        "callsEnabled": false, "owners": [{"id": user_id(0), "selfUri": format!("/api/v2/users/{}", user_id(0))}],
        "addresses": [], "selfUri": format!("/api/v2/groups/{id}"),
    })
}

/// The entities `listing` returns for `filter` (users: the `state` parameter; wrap-up code
/// search: `includeState`), in the API's order (by name).
pub fn entities(listing: Listing, filter: Option<&str>) -> Vec<Value> {
    let mut v: Vec<Value> = match listing {
        Listing::Users => {
            let want = filter.unwrap_or("active");
            (0..USER_COUNT)
                .filter(|&i| want == "any" || user_state(i) == want)
                .map(user)
                .collect()
        }
        Listing::Queues => QUEUES
            .iter()
            .chain(IDLE_QUEUES.iter())
            .filter(|(id, _)| *id != DELETED_QUEUE)
            .map(|(id, n)| queue(id, n))
            .collect(),
        Listing::WrapupCodes => WRAPUPS
            .iter()
            .filter(|(id, _)| *id != DELETED_WRAPUP)
            .map(|(id, n)| wrapup(id, n))
            .collect(),
        Listing::WrapupCodeSearch => {
            let (active, deleted) = match filter.unwrap_or("Active") {
                "Deleted" => (false, true),
                "ActiveAndDeleted" => (true, true),
                _ => (true, false),
            };
            WRAPUPS
                .iter()
                .filter(|(id, _)| {
                    if *id == DELETED_WRAPUP {
                        deleted
                    } else {
                        active
                    }
                })
                .map(|(id, n)| wrapup(id, n))
                .collect()
        }
        Listing::Divisions => vec![
            division(DIVISION, "Home", true),
            division(DIVISION_EMEA, "EMEA", false),
        ],
        Listing::DeletedDivisions => vec![division(DIVISION_LEGACY, "Legacy", false)],
        Listing::Skills => SKILLS.iter().map(|(id, n)| skill(id, n)).collect(),
        Listing::Languages => LANGUAGES.iter().map(|(id, n)| language(id, n)).collect(),
        Listing::Groups => GROUPS
            .iter()
            .enumerate()
            .map(|(i, (id, n))| group(i, id, n))
            .collect(),
    };
    v.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    v
}

/// `/presence/definitions`: active ones, or with `deactivated` the deactivated ones only.
pub fn presence_definitions(deactivated: bool, locale: Option<&str>) -> Vec<Value> {
    PRESENCES
        .iter()
        .filter(|p| p.5 == deactivated)
        .map(|p| presence(p, locale))
        .collect()
}

/// What a complete extraction can list, per table (the truth tests compare against): users of
/// every state, the listable queues, active and deleted wrap-up codes, active and deleted
/// divisions, active and deactivated presence definitions, skills, languages, groups.
pub fn listable_ids(table: &str) -> Vec<String> {
    let ids = |v: Vec<Value>| -> Vec<String> {
        v.iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect()
    };
    let mut out = match table {
        "users" => ids(entities(Listing::Users, Some("any"))),
        "queues" => ids(entities(Listing::Queues, None)),
        "wrapup_codes" => ids(entities(
            Listing::WrapupCodeSearch,
            Some("ActiveAndDeleted"),
        )),
        "divisions" => {
            let mut v = ids(entities(Listing::Divisions, None));
            v.extend(ids(entities(Listing::DeletedDivisions, None)));
            v
        }
        "presence_definitions" => {
            let mut v = ids(presence_definitions(false, None));
            v.extend(ids(presence_definitions(true, None)));
            v
        }
        "skills" => ids(entities(Listing::Skills, None)),
        "languages" => ids(entities(Listing::Languages, None)),
        "groups" => ids(entities(Listing::Groups, None)),
        _ => Vec::new(),
    };
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rules() {
        let active = entities(Listing::Users, None).len();
        let any = entities(Listing::Users, Some("any")).len();
        assert_eq!(any, USER_COUNT);
        assert_eq!(active, USER_COUNT - 8);
        assert_eq!(entities(Listing::Users, Some("deleted")).len(), 4);
        assert!(entities(Listing::Queues, None)
            .iter()
            .all(|q| q["id"] != DELETED_QUEUE));
        assert!(entities(Listing::WrapupCodes, None)
            .iter()
            .all(|q| q["id"] != DELETED_WRAPUP));
        let deleted = entities(Listing::WrapupCodeSearch, Some("Deleted"));
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0]["id"], DELETED_WRAPUP);
        assert_eq!(presence_definitions(true, None).len(), 1);
        assert_eq!(listable_ids("presence_definitions").len(), PRESENCES.len());
        let p = presence_definitions(false, Some("en_US"));
        assert!(p.iter().all(|d| d["languageLabels"].get("de").is_none()));
    }
}

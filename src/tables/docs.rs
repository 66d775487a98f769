//! The README's table list, generated from the schema.

use super::schema::{Role, Table, PARTITION_COLUMN, SCHEMA_VERSION};

/// Markdown: every table with its keys and the number of API columns; the full column list
/// (with types and descriptions) is folded per table.
pub fn markdown() -> String {
    let mut out = format!(
        "Schema version {SCHEMA_VERSION}. Every table is partitioned by `{PARTITION_COLUMN}` \
         (UTC date of `conversation_start`, in the path) and carries `conversation_id` and \
         `conversation_start`. Column names are the API's JSON names in snake_case; fields the \
         schema does not know yet are kept as JSON in `extra`; `conversations.raw` keeps the \
         whole record only when asked (`--raw` / `GP_RAW`).\n\n| table | one row per | keys |\n|---|---|---|\n"
    );
    for t in Table::all() {
        let spec = t.spec();
        let keys: Vec<String> = t
            .columns()
            .iter()
            .filter(|c| matches!(c.role, Role::Key | Role::Index))
            .map(|c| format!("`{}`", c.name))
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            spec.name,
            spec.description,
            keys.join(", ")
        ));
    }
    for t in Table::all() {
        out.push_str(&format!(
            "\n<details><summary><code>{}</code> ({} columns)</summary>\n\n| column | type | description |\n|---|---|---|\n",
            t.name(),
            t.columns().len()
        ));
        for c in t.columns() {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                c.name,
                c.ty.athena(),
                c.doc.replace('|', "\\|")
            ));
        }
        out.push_str("\n</details>\n");
    }
    out
}

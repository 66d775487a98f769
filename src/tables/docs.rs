//! The README's table list, generated from the schema.

use super::schema::{Role, SCHEMA_VERSION};
use crate::datasets::{Dataset, Partitioning};

/// Markdown: per dataset, its partitioning and every table with its keys; the full column list
/// (with types and descriptions) is folded per table.
pub fn markdown() -> String {
    let mut out = format!(
        "Schema version {SCHEMA_VERSION}. Column names are the API's JSON names in snake_case; \
         fields the schema does not know yet are kept as JSON in `extra`; a root table's `raw` \
         keeps the whole record only when asked (`--raw` / `GP_RAW`).\n"
    );
    for d in Dataset::all() {
        let rule = match d.partitioning {
            Partitioning::RecordDay { time_column, .. } => {
                format!("UTC date of the record's `{time_column}`")
            }
            Partitioning::RowDay { time_column, .. } => {
                format!("UTC date of each row's `{time_column}`")
            }
            Partitioning::RunDate { .. } => "UTC date of the run".to_string(),
        };
        out.push_str(&format!(
            "\n### Dataset `{}`\n\n{}. Every table is partitioned by `{}` ({rule}, in the \
             path).\n\n| table | one row per | keys |\n|---|---|---|\n",
            d.name,
            d.description,
            d.partitioning.column(),
        ));
        for t in d.tables {
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
    }
    for d in Dataset::all() {
        for t in d.tables {
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
    }
    out
}

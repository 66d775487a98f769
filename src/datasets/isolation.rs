//! The claim of the Dataset design, checked on the sources: nothing outside `src/tables/` and
//! the conversations dataset's own module (`src/datasets/conversations/`) names a table of that
//! dataset, its key columns or its partition column. Everything else reaches them through the
//! descriptor ([`super::ALL`], [`super::Dataset`]), so a second dataset needs no change there.
//!
//! "Names" means, in code and in string literals (comments are prose and are skipped):
//! - a table's Rust constant (`conversations::SEGMENTS`, or imported from the module);
//! - a string literal holding a table's name (`"segments"`), or using it as a relation in SQL
//!   (`FROM segments`, `JOIN participants p`) or as a folder (`'{out}/segments/*.parquet'`,
//!   `segments/conversation_date=…`);
//! - any literal containing a key or partition column (`conversation_id`, `conversation_date`:
//!   snake_case, so never an English word or an API field, which are camelCase).
//!
//! Some tables are spelled like the API's own JSON fields (`participants`, `sessions`,
//! `segments` are lists in a conversation record; `conversations` is the page's list): a
//! literal that reads such a field of an API record (`v.get("participants")`,
//! `o.list("sessions")`, `v["segments"]`) is the API's name, not the table's, and is not
//! counted. The simulator writes API records, and must not learn their field names from our
//! schema (then a wrong name in the schema would go unnoticed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::conversations;

/// Where a conversation table may be named: the tables' code, and the dataset's module
/// (`src/datasets/<name>/`).
fn allowed() -> [String; 2] {
    [
        "src/tables/".to_string(),
        format!("src/datasets/{}/", conversations::DATASET.name),
    ]
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A piece of source: code (outside literals and comments) or a string literal's content.
#[derive(Debug, PartialEq)]
enum Piece {
    Code(String),
    /// A literal, with the code just before it on its line (to see how it is used).
    Str {
        text: String,
        before: String,
    },
}

/// Splits Rust source into code and string literals, dropping comments. Handles escapes, raw
/// strings (`r#"…"#`), byte strings and char literals (`'"'`) vs lifetimes (`'a`).
fn lex(src: &str) -> Vec<Piece> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut code = String::new();
    let mut i = 0;
    let line_before = |code: &str| -> String {
        code.rsplit('\n')
            .next()
            .unwrap_or("")
            .trim_start()
            .to_string()
    };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '\n' {
                    code.push('\n');
                    i += 1;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '"'), else a lifetime or label.
            if next == Some('\\') {
                let mut j = i + 3;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                code.push(c);
                i += 1;
            }
        } else if c == '"' || ((c == 'r' || c == 'b') && raw_start(&b, i).is_some()) {
            let ident_before = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
            if c != '"' && ident_before {
                code.push(c);
                i += 1;
                continue;
            }
            let (start, hashes, raw) = if c == '"' {
                (i + 1, 0, false)
            } else {
                let (s, h, r) = raw_start(&b, i).expect("checked");
                (s, h, r)
            };
            let mut j = start;
            let mut text = String::new();
            loop {
                if j >= b.len() {
                    break;
                }
                if !raw && b[j] == '\\' {
                    text.push(b[j]);
                    if let Some(&n) = b.get(j + 1) {
                        text.push(n);
                    }
                    j += 2;
                    continue;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                text.push(b[j]);
                j += 1;
            }
            let before = line_before(&code);
            out.push(Piece::Code(std::mem::take(&mut code)));
            out.push(Piece::Str { text, before });
            i = j;
        } else {
            code.push(c);
            i += 1;
        }
    }
    out.push(Piece::Code(code));
    out
}

/// At `b[i]`: `r"`, `r#"`, `b"`, `br#"`… → (content start, number of `#`, raw).
fn raw_start(b: &[char], i: usize) -> Option<(usize, usize, bool)> {
    let mut j = i;
    if b.get(j) == Some(&'b') {
        j += 1;
    }
    let raw = b.get(j) == Some(&'r');
    if raw {
        j += 1;
    }
    if j == i {
        return None;
    }
    let mut hashes = 0;
    while raw && b.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (b.get(j) == Some(&'"')).then_some((j + 1, hashes, raw))
}

fn words(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.match_indices(|c: char| c.is_alphanumeric() || c == '_')
        .fold(Vec::<(usize, usize)>::new(), |mut v, (at, m)| {
            match v.last_mut() {
                Some(last) if last.0 + last.1 == at => last.1 += m.len(),
                _ => v.push((at, m.len())),
            }
            v
        })
        .into_iter()
        .map(move |(at, len)| (at, &s[at..at + len]))
}

/// The literal reads a field of an API record: `x.get("f")`, `.get_mut("f")`, `.list("f")`,
/// `x["f"]`.
fn reads_api_field(before: &str) -> bool {
    let b = before.trim_end();
    b.ends_with('[')
        || [".get(", ".get_mut(", ".list("]
            .iter()
            .any(|a| b.ends_with(a))
}

/// How a string literal names one of `tables` or `columns`, if it does.
fn literal_names(
    text: &str,
    before: &str,
    tables: &BTreeSet<&str>,
    columns: &BTreeSet<&str>,
) -> Option<String> {
    // The API's own paths (`/api/v2/analytics/conversations/details/query`).
    if text.starts_with("/api/") {
        return None;
    }
    if tables.contains(text) && !reads_api_field(before) {
        return Some(format!("the table name {text:?}"));
    }
    let lower = text.to_ascii_lowercase();
    let ws: Vec<(usize, &str)> = words(&lower).collect();
    for (k, &(at, w)) in ws.iter().enumerate() {
        if columns.contains(w) {
            return Some(format!("the column {w}"));
        }
        if !tables.contains(w) {
            continue;
        }
        let prev = k.checked_sub(1).map(|p| ws[p].1);
        if matches!(prev, Some("from" | "join")) {
            return Some(format!("the table {w} in SQL"));
        }
        let before_w = lower[..at].chars().next_back();
        let after_w = lower[at + w.len()..].chars().next();
        let starts_segment = matches!(before_w, None | Some('/' | '\'' | '"' | '`'));
        if starts_segment && matches!(after_w, Some('/')) {
            return Some(format!("the folder {w}/"));
        }
    }
    None
}

/// Every place outside [`ALLOWED`] that names a conversation table or one of its key or
/// partition columns: `path:line: what`.
fn violations() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ds = &conversations::DATASET;
    let tables: BTreeSet<&str> = ds.tables.iter().map(|t| t.name()).collect();
    let mut columns: BTreeSet<&str> = ds
        .tables
        .iter()
        .flat_map(|t| t.spec().keys.iter().map(|k| k.name))
        .collect();
    columns.insert(ds.partitioning.column());
    columns.extend(ds.partitioning.time_column());
    // The tables' Rust constants, as the module declares them.
    let module = std::fs::read_to_string(root.join(format!("src/datasets/{}/mod.rs", ds.name)))
        .expect("the dataset's module");
    let consts: BTreeSet<String> = module
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": Table ="))
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(
        consts.len(),
        tables.len(),
        "one constant per table: {consts:?}"
    );

    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 30, "the sources: {}", files.len());
    let mut found = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        if allowed().iter().any(|a| rel.starts_with(a.as_str())) {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("read");
        let mut offset_line = 1;
        for piece in lex(&src) {
            match &piece {
                Piece::Code(code) => {
                    for (at, w) in words(code) {
                        let head = &code[..at];
                        let in_braces = head
                            .rfind("conversations::{")
                            .is_some_and(|o| !head[o..].contains('}'));
                        let path_before = head.trim_end().ends_with("conversations::") || in_braces;
                        if consts.contains(w) && path_before {
                            let line = offset_line + code[..at].matches('\n').count();
                            found.push(format!("{rel}:{line}: the table constant {w}"));
                        }
                    }
                    offset_line += code.matches('\n').count();
                }
                Piece::Str { text, before } => {
                    if let Some(what) = literal_names(text, before, &tables, &columns) {
                        found.push(format!("{rel}:{offset_line}: {what}"));
                    }
                    offset_line += text.matches('\n').count();
                }
            }
        }
    }
    found
}

#[test]
fn the_lexer_sees_literals_not_comments() {
    let src = "let a = \"x\"; // \"widgets\"\n/* \"gadgets\" */ let c = '\"'; let q = '\\''; \
               fn f<'a>(s: &'a str) {} let r = r#\"FROM \"widgets\" w\"#; let u = \"http://h/\";";
    let strs: Vec<String> = lex(src)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Str { text, .. } => Some(text),
            Piece::Code(_) => None,
        })
        .collect();
    assert_eq!(strs, ["x", "FROM \"widgets\" w", "http://h/"]);
}

#[test]
fn what_counts_as_naming_a_table() {
    let tables: BTreeSet<&str> = ["widgets", "gadgets"].into();
    let columns: BTreeSet<&str> = ["widget_id"].into();
    let names = |text: &str, before: &str| literal_names(text, before, &tables, &columns);
    assert!(names("widgets", "let t = ").is_some());
    assert!(names("SELECT x FROM widgets s", "").is_some());
    assert!(names("a LEFT JOIN gadgets p ON", "").is_some());
    assert!(names("read_parquet('{out}/widgets/*/*.parquet')", "").is_some());
    assert!(names("widgets/widget_date=", "").is_some());
    assert!(names("count(DISTINCT s.Widget_Id)", "").is_some());
    // The API's field names, and prose.
    assert!(names("gadgets", "let ps = v.get_mut(").is_none());
    assert!(names("gizmos", "let l = p.list(").is_none());
    assert!(names("widgets", "let s = &v[").is_none());
    assert!(names("{} widgets written, {} gadgets", "").is_none());
    assert!(names("widgetId", "").is_none());
    assert!(names("/api/v2/analytics/widgets/details/query", "").is_none());
}

/// The closing note's evidence: prints what it scanned and what it found (nothing).
#[test]
fn nothing_outside_the_tables_and_its_module_names_a_conversation_table() {
    let found = violations();
    assert!(
        found.is_empty(),
        "conversation tables named outside {:?} (reach them through the Dataset descriptor):\n{}",
        allowed(),
        found.join("\n")
    );
}

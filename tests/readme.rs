//! The README's table list is generated from the one schema definition; this keeps it so.
//! To refresh it: `GP_UPDATE_README=1 cargo test --test readme`.

const BEGIN: &str = "<!-- BEGIN GENERATED TABLES (genesys-parquet schema --format markdown) -->\n";
const END: &str = "<!-- END GENERATED TABLES -->";

#[test]
fn readme_tables_match_the_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let (head, rest) = readme.split_once(BEGIN).expect("BEGIN marker in README.md");
    let (current, tail) = rest.split_once(END).expect("END marker in README.md");
    let generated = genesys_parquet::tables::docs::markdown();
    if current != generated {
        if std::env::var_os("GP_UPDATE_README").is_some() {
            std::fs::write(path, format!("{head}{BEGIN}{generated}{END}{tail}")).expect("write");
            return;
        }
        panic!("README.md's table list is out of date: run GP_UPDATE_README=1 cargo test --test readme");
    }
}

#!/usr/bin/env python3
"""Regenerate the Glue tables (and Athena named queries) in template.yaml.

The table schema is defined once, in Rust (`genesys-parquet schema --format json`); this
script turns that JSON into one `AWS::Glue::Table` resource per output table and writes them
between the marker comments

    # BEGIN GENERATED GLUE TABLES
    # END GENERATED GLUE TABLES

It also copies the queries of `infra/athena/named_queries.sql` into `AWS::Athena::NamedQuery`
resources between `# BEGIN GENERATED NAMED QUERIES` / `# END GENERATED NAMED QUERIES`, so the
SQL file stays the one place to edit them.

Usage:
    cargo run -q -- schema --format json | python3 infra/gen_glue_tables.py --write template.yaml
    python3 infra/gen_glue_tables.py --schema schema.json --check template.yaml

`--check` exits 1 and prints a unified diff when template.yaml is not what the schema and the
SQL file produce. Standard library only.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

TABLES_BEGIN = "  # BEGIN GENERATED GLUE TABLES"
TABLES_END = "  # END GENERATED GLUE TABLES"
QUERIES_BEGIN = "  # BEGIN GENERATED NAMED QUERIES"
QUERIES_END = "  # END GENERATED NAMED QUERIES"

ATHENA_TYPES = re.compile(
    r"^(string|bigint|int|double|float|boolean|timestamp|date|"
    r"array<(string|bigint|int|double|boolean|timestamp)>)$"
)
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Glue rejects longer comments/descriptions.
GLUE_COMMENT_MAX = 255
GLUE_DESCRIPTION_MAX = 2048

DEFAULT_SQL = Path(__file__).resolve().parent / "athena" / "named_queries.sql"


class SchemaError(Exception):
    pass


def q(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def clip(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def logical_id(prefix: str, name: str) -> str:
    return prefix + "".join(part.capitalize() for part in name.split("_") if part)


def partition_keys(schema: dict, table: dict) -> list[dict]:
    """A table's partition keys: its dataset's (per table), else the schema-wide ones."""
    keys = table.get("partition_keys", schema.get("partition_keys"))
    if not keys:
        raise SchemaError(f"table {table.get('name', '')!r} has no partition keys")
    return keys


def validate(schema: dict) -> None:
    for key in ("schema_version", "tables"):
        if key not in schema:
            raise SchemaError(f"schema JSON has no '{key}'")
    if not schema["tables"]:
        raise SchemaError("schema JSON lists no tables")
    seen_tables = set()
    for table in schema["tables"]:
        tname = table.get("name", "")
        partition_names = {p["name"] for p in partition_keys(schema, table)}
        if not NAME.match(tname):
            raise SchemaError(f"table name {tname!r} is not lower_snake_case")
        if tname in seen_tables:
            raise SchemaError(f"table {tname} appears twice")
        seen_tables.add(tname)
        if not table.get("columns"):
            raise SchemaError(f"table {tname} has no columns")
        seen_cols = set()
        for col in table["columns"]:
            cname = col.get("name", "")
            if not NAME.match(cname):
                raise SchemaError(f"table {tname}: column name {cname!r} is not lower_snake_case")
            if cname in seen_cols:
                raise SchemaError(f"table {tname}: column {cname} appears twice")
            if cname in partition_names:
                # Athena/Glue forbid a partition key that is also a data column.
                raise SchemaError(f"table {tname}: column {cname} is also a partition key")
            seen_cols.add(cname)
            if not ATHENA_TYPES.match(col.get("type", "")):
                raise SchemaError(
                    f"table {tname}: column {cname} has type {col.get('type')!r}, "
                    "not an Athena type this generator knows"
                )


def glue_tables(schema: dict) -> list[str]:
    version = str(schema["schema_version"])
    out: list[str] = []
    for table in schema["tables"]:
        name = table["name"]
        out += [
            f"  {logical_id('GlueTable', name)}:",
            "    Type: AWS::Glue::Table",
            "    Properties:",
            "      CatalogId: !Ref AWS::AccountId",
            "      DatabaseName: !Ref GlueDatabase",
            "      TableInput:",
            f"        Name: {name}",
            f"        Description: {q(clip(table.get('description', ''), GLUE_DESCRIPTION_MAX))}",
            "        TableType: EXTERNAL_TABLE",
            "        Parameters:",
            "          classification: parquet",
            '          EXTERNAL: "TRUE"',
            "          parquet.compression: ZSTD",
            f"          genesys_parquet.schema_version: {q(version)}",
            '          projection.enabled: !If [UsePartitionProjection, "true", "false"]',
        ]
        keys = partition_keys(schema, table)
        for key in keys:
            # Date keys (`<x>_date`, yyyy-MM-dd) are known to the projection; others would need
            # their own rules.
            k = key["name"]
            if k.endswith("_date"):
                out += [
                    f"          projection.{k}.type: date",
                    f"          projection.{k}.range: 2015-01-01,NOW",
                    f"          projection.{k}.format: yyyy-MM-dd",
                    f'          projection.{k}.interval: "1"',
                    f"          projection.{k}.interval.unit: DAYS",
                ]
        folders = "/".join(f"{k['name']}=${{!{k['name']}}}" for k in keys)
        out += [
            "          storage.location.template: !Sub "
            + q(f"s3://${{DataBucket}}/${{DataPrefix}}/{name}/{folders}/"),
            "        PartitionKeys:",
        ]
        for key in keys:
            out += [f"          - Name: {key['name']}", f"            Type: {key['type']}"]
        out += [
            "        StorageDescriptor:",
            f"          Location: !Sub {q(f's3://${{DataBucket}}/${{DataPrefix}}/{name}/')}",
            "          InputFormat: org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "          OutputFormat: org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "          SerdeInfo:",
            "            SerializationLibrary: org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
            "            Parameters:",
            '              serialization.format: "1"',
            "          Columns:",
        ]
        for col in table["columns"]:
            out += [f"            - Name: {col['name']}", f"              Type: {col['type']}"]
            comment = clip(col.get("description", ""), GLUE_COMMENT_MAX)
            if comment:
                out.append(f"              Comment: {q(comment)}")
    return out


PRESTO_TYPES = {
    "string": "varchar",
    "bigint": "bigint",
    "int": "integer",
    "double": "double",
    "float": "real",
    "boolean": "boolean",
    "timestamp": "timestamp(3)",
    "date": "date",
}


def presto_type(hive: str) -> str:
    """The Trino type Athena records in a view for a column of Glue (Hive) type `hive`."""
    m = re.match(r"^array<(.+)>$", hive)
    if m:
        return f"array({presto_type(m.group(1))})"
    return PRESTO_TYPES[hive]


def glue_views(schema: dict) -> list[str]:
    """An Athena view per table that has one in the schema (`latest_view`: the newest row per
    id across snapshots), as the Glue VIRTUAL_VIEW Athena itself creates: the SQL and the
    columns base64-encoded in `ViewOriginalText`, Trino types there, Hive types in the
    storage descriptor."""
    out: list[str] = []
    for table in schema["tables"]:
        view = table.get("latest_view")
        if not view:
            continue
        name = view["name"]
        if not NAME.match(name):
            raise SchemaError(f"view name {name!r} is not lower_snake_case")
        columns = list(table["columns"]) + [
            {"name": k["name"], "type": k["type"], "description": "The snapshot this row is from"}
            for k in partition_keys(schema, table)
        ]
        # `${GlueDatabase}` is substituted by Fn::Sub; the SQL has no `${`.
        if "${" in view["sql"]:
            raise SchemaError(f"view {name}: SQL contains '${{'")
        presto = json.dumps({
            "originalSql": view["sql"],
            "catalog": "awsdatacatalog",
            "schema": "${GlueDatabase}",
            "columns": [{"name": c["name"], "type": presto_type(c["type"])} for c in columns],
        }, ensure_ascii=False)
        out += [
            f"  {logical_id('GlueView', name)}:",
            "    Type: AWS::Glue::Table",
            f"    DependsOn: {logical_id('GlueTable', table['name'])}",
            "    Properties:",
            "      CatalogId: !Ref AWS::AccountId",
            "      DatabaseName: !Ref GlueDatabase",
            "      TableInput:",
            f"        Name: {name}",
            f"        Description: {q(clip('Newest row per id across all snapshots of ' + table['name'] + ' (an entity deleted since keeps its last name).', GLUE_DESCRIPTION_MAX))}",
            "        TableType: VIRTUAL_VIEW",
            "        Parameters:",
            '          presto_view: "true"',
            "          comment: Presto View",
            f"        ViewExpandedText: {q('/* Presto View */')}",
            "        ViewOriginalText: !Join",
            "          - \"\"",
            "          - - \"/* Presto View: \"",
            f"            - !Base64 {{\"Fn::Sub\": {q(presto)}}}",
            "            - \" */\"",
            "        StorageDescriptor:",
            "          SerdeInfo: {}",
            "          Columns:",
        ]
        for col in columns:
            out += [f"            - Name: {col['name']}", f"              Type: {col['type']}"]
    return out


def parse_sql(text: str) -> list[dict]:
    """Queries in the SQL file: each starts with `-- name: <id>` and `-- description: ...`."""
    queries: list[dict] = []
    current = None
    for line in text.splitlines():
        m = re.match(r"^--\s*name:\s*([a-z][a-z0-9_]*)\s*$", line)
        if m:
            current = {"name": m.group(1), "description": "", "sql": []}
            queries.append(current)
            continue
        if current is None:
            continue
        m = re.match(r"^--\s*description:\s*(.*)$", line)
        if m and not current["sql"]:
            current["description"] = m.group(1).strip()
            continue
        current["sql"].append(line)
    for query in queries:
        body = "\n".join(query["sql"]).strip()
        if not body.endswith(";"):
            raise SchemaError(f"named query {query['name']} does not end with ';'")
        query["sql"] = body
    names = [q_["name"] for q_ in queries]
    if len(set(names)) != len(names):
        raise SchemaError("duplicate named query names in the SQL file")
    return queries


def named_queries(queries: list[dict]) -> list[str]:
    out: list[str] = []
    for query in queries:
        out += [
            f"  {logical_id('NamedQuery', query['name'])}:",
            "    Type: AWS::Athena::NamedQuery",
            "    Properties:",
            f"      Name: {q('genesys-parquet: ' + query['name'])}",
            f"      Description: {q(clip(query['description'], 1024))}",
            "      Database: !Ref GlueDatabase",
            "      WorkGroup: !Ref AthenaWorkGroup",
            "      QueryString: |",
        ]
        out += [("        " + line).rstrip() for line in query["sql"].splitlines()]
    return out


def replace_between(text: str, begin: str, end: str, body: list[str], what: str) -> str:
    lines = text.splitlines()
    try:
        b = lines.index(begin)
        e = lines.index(end)
    except ValueError:
        raise SchemaError(f"template has no '{begin.strip()}' / '{end.strip()}' markers ({what})")
    if e < b:
        raise SchemaError(f"template markers for {what} are out of order")
    new = lines[: b + 1] + body + lines[e:]
    return "\n".join(new) + ("\n" if text.endswith("\n") else "")


def render(template: str, schema: dict, sql: str) -> str:
    validate(schema)
    text = replace_between(
        template, TABLES_BEGIN, TABLES_END, glue_tables(schema) + glue_views(schema), "Glue tables"
    )
    return replace_between(text, QUERIES_BEGIN, QUERIES_END, named_queries(parse_sql(sql)), "named queries")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="TEMPLATE", help="rewrite the generated sections in place")
    mode.add_argument("--check", metavar="TEMPLATE", help="exit 1 with a diff when out of date")
    ap.add_argument("--schema", default="-", help="schema JSON file (default: stdin)")
    ap.add_argument("--sql", default=str(DEFAULT_SQL), help="named queries SQL file")
    args = ap.parse_args(argv)

    try:
        raw = sys.stdin.read() if args.schema == "-" else Path(args.schema).read_text(encoding="utf-8")
        schema = json.loads(raw)
        path = Path(args.write or args.check)
        current = path.read_text(encoding="utf-8")
        sql = Path(args.sql).read_text(encoding="utf-8")
        wanted = render(current, schema, sql)
    except (OSError, json.JSONDecodeError, SchemaError, KeyError) as err:
        print(f"gen_glue_tables: {err}", file=sys.stderr)
        return 2

    if args.write:
        if wanted != current:
            path.write_text(wanted, encoding="utf-8")
            print(f"gen_glue_tables: updated {path} ({len(schema['tables'])} tables)")
        return 0
    if wanted != current:
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                fromfile=f"{path} (committed)",
                tofile=f"{path} (generated)",
            )
        )
        print(
            f"gen_glue_tables: {path} is out of date; regenerate with\n"
            "  cargo run -q -- schema --format json | python3 infra/gen_glue_tables.py --write template.yaml",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

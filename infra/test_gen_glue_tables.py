#!/usr/bin/env python3
"""Tests of gen_glue_tables.py (stdlib unittest; run: python3 infra/test_gen_glue_tables.py)."""
import copy
import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen_glue_tables as gen  # noqa: E402

SAMPLE = json.loads((HERE / "testdata" / "schema-sample.json").read_text(encoding="utf-8"))
SQL = (HERE / "athena" / "named_queries.sql").read_text(encoding="utf-8")
SKELETON = """Resources:
  Other:
    Type: AWS::SNS::Topic
  # BEGIN GENERATED GLUE TABLES
  Stale:
    Type: AWS::Glue::Table
  # END GENERATED GLUE TABLES
  # BEGIN GENERATED NAMED QUERIES
  # END GENERATED NAMED QUERIES
Outputs: {}
"""


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, str(HERE / "gen_glue_tables.py"), *args],
                          input=stdin, capture_output=True, text=True)


class Render(unittest.TestCase):
    def test_one_table_resource_per_table_with_every_column_in_order(self):
        out = gen.render(SKELETON, SAMPLE, SQL)
        self.assertNotIn("Stale:", out)
        self.assertIn("  Other:\n    Type: AWS::SNS::Topic\n", out)
        self.assertEqual(out.count("Type: AWS::Glue::Table"), len(SAMPLE["tables"]))
        for table in SAMPLE["tables"]:
            lid = gen.logical_id("GlueTable", table["name"])
            section = out.split(f"  {lid}:\n", 1)[1].split("\n  Glue", 1)[0].split("\n  # END", 1)[0]
            names = [l.split("- Name: ", 1)[1] for l in section.splitlines() if "            - Name: " in l]
            self.assertEqual(names, [c["name"] for c in table["columns"]])
            types = [l.split("Type: ", 1)[1] for l in section.splitlines() if l.startswith("              Type: ")]
            self.assertEqual(types, [c["type"] for c in table["columns"]])
            self.assertIn(f'Location: !Sub "s3://${{DataBucket}}/${{DataPrefix}}/{table["name"]}/"', section)
            self.assertIn(f"/{table['name']}/conversation_date=${{!conversation_date}}/", section)
            self.assertIn("          - Name: conversation_date\n            Type: string", section)
        self.assertIn("GlueTableSessionMetrics:", out)

    def test_a_latest_view_is_an_athena_view_of_its_table(self):
        schema = copy.deepcopy(SAMPLE)
        table = schema["tables"][0]
        table["partition_keys"] = [{"name": "snapshot_date", "type": "string"}]
        table["columns"].append({"name": "tags", "type": "array<string>", "description": ""})
        sql = 'SELECT "a" FROM (SELECT * FROM "t") AS s WHERE x = 1'
        table["latest_view"] = {"name": table["name"] + "_latest", "sql": sql}
        out = gen.render(SKELETON, schema, SQL)
        self.assertEqual(out.count("TableType: VIRTUAL_VIEW"), 1)
        lid = gen.logical_id("GlueView", table["name"] + "_latest")
        section = out.split(f"  {lid}:\n", 1)[1].split("\n  # END", 1)[0]
        self.assertIn(f"DependsOn: {gen.logical_id('GlueTable', table['name'])}", section)
        line = next(l for l in section.splitlines() if "!Base64" in l)
        sub = json.loads(line.split('{"Fn::Sub": ', 1)[1].rsplit("}", 1)[0])
        presto = json.loads(sub)
        self.assertEqual(presto["originalSql"], sql)
        self.assertEqual(presto["schema"], "${GlueDatabase}")
        cols = {c["name"]: c["type"] for c in presto["columns"]}
        self.assertEqual(cols["tags"], "array(varchar)")
        self.assertEqual(cols["snapshot_date"], "varchar")
        self.assertEqual(list(cols)[-1], "snapshot_date")
        names = [l.split("- Name: ", 1)[1] for l in section.splitlines() if "            - Name: " in l]
        self.assertEqual(names, list(cols))
        table["latest_view"]["sql"] = "SELECT '${x}'"
        with self.assertRaises(gen.SchemaError):
            gen.render(SKELETON, schema, SQL)

    def test_named_queries_copied_verbatim(self):
        out = gen.render(SKELETON, SAMPLE, SQL)
        queries = gen.parse_sql(SQL)
        self.assertEqual([q["name"] for q in queries], [
            "avg_handle_time_per_queue_per_day", "abandon_rate_per_queue_per_day",
            "transfers_per_conversation", "service_level_per_queue_per_day",
            "handled_per_queue_and_wrapup_code", "handle_time_per_agent_per_day",
            "time_in_routing_status_per_agent_per_day", "occupancy_per_agent_per_day"])
        self.assertEqual(out.count("Type: AWS::Athena::NamedQuery"), 8)
        for q in queries:
            indented = "\n".join(("        " + l).rstrip() for l in q["sql"].splitlines())
            self.assertIn(indented, out)

    def test_idempotent(self):
        once = gen.render(SKELETON, SAMPLE, SQL)
        self.assertEqual(gen.render(once, SAMPLE, SQL), once)

    def test_comments_are_quoted_and_clipped(self):
        schema = copy.deepcopy(SAMPLE)
        schema["tables"][0]["columns"][0]["description"] = 'a "quoted": #not-a-comment ' + "x" * 400
        out = gen.render(SKELETON, schema, SQL)
        line = next(l for l in out.splitlines() if 'a \\"quoted\\"' in l)
        comment = json.loads(line.split("Comment: ", 1)[1])
        self.assertEqual(len(comment), gen.GLUE_COMMENT_MAX)
        self.assertTrue(comment.startswith('a "quoted": #not-a-comment x'))

    def test_rejects_bad_schemas(self):
        cases = {
            "not an Athena type": ("type", "map<string,string>"),
            "is also a partition key": ("name", "conversation_date"),
            "not lower_snake_case": ("name", "ConversationId"),
        }
        for message, (field, value) in cases.items():
            schema = copy.deepcopy(SAMPLE)
            schema["tables"][1]["columns"][2][field] = value
            with self.assertRaisesRegex(gen.SchemaError, message):
                gen.render(SKELETON, schema, SQL)
        schema = copy.deepcopy(SAMPLE)
        schema["tables"][2]["columns"].append(dict(schema["tables"][2]["columns"][0]))
        with self.assertRaisesRegex(gen.SchemaError, "session_metrics: column conversation_id appears twice"):
            gen.render(SKELETON, schema, SQL)

    def test_missing_markers(self):
        with self.assertRaisesRegex(gen.SchemaError, "BEGIN GENERATED GLUE TABLES"):
            gen.render("Resources: {}\n", SAMPLE, SQL)


class Cli(unittest.TestCase):
    def test_write_then_check_then_drift(self):
        with tempfile.TemporaryDirectory() as d:
            tpl = Path(d) / "template.yaml"
            tpl.write_text(SKELETON, encoding="utf-8")
            r = run_cli("--write", str(tpl), stdin=json.dumps(SAMPLE))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("GlueTableSegments:", tpl.read_text(encoding="utf-8"))
            r = run_cli("--check", str(tpl), stdin=json.dumps(SAMPLE))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(r.stdout, "")

            drifted = copy.deepcopy(SAMPLE)
            drifted["tables"][1]["columns"].append({
                "name": "new_field", "type": "bigint", "arrow_type": "Int64", "nullable": True,
                "source": "x", "description": "added by the API"})
            schema_file = Path(d) / "schema.json"
            schema_file.write_text(json.dumps(drifted), encoding="utf-8")
            before = tpl.read_text(encoding="utf-8")
            r = run_cli("--schema", str(schema_file), "--check", str(tpl))
            self.assertEqual(r.returncode, 1)
            self.assertIn("+            - Name: new_field", r.stdout)
            self.assertIn("out of date", r.stderr)
            self.assertEqual(tpl.read_text(encoding="utf-8"), before, "--check must not write")

    def test_invalid_json_is_an_error(self):
        with tempfile.TemporaryDirectory() as d:
            tpl = Path(d) / "template.yaml"
            tpl.write_text(SKELETON, encoding="utf-8")
            r = run_cli("--check", str(tpl), stdin="{not json")
            self.assertEqual(r.returncode, 2)
            self.assertIn("gen_glue_tables:", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=1)

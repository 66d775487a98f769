#!/usr/bin/env bash
# Offline checks of the deployment files; `.ci/run` calls this. Installs nothing.
#
# Needs cfn-lint: on PATH, or in the Python named by GP_PYTHON (`$GP_PYTHON -m cfnlint`), the
# SAM CLI: on PATH, or named by GP_SAM, and aws-sam-translator + parliament in GP_PYTHON
# (tests/requirements.txt).
# The Glue tables are checked against `genesys-parquet schema --format json`: the binary named by
# GP_BIN when set (`.ci/run` passes the one its tests built), else `cargo run`.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${GP_PYTHON:-python3}"
if command -v cfn-lint >/dev/null 2>&1; then
  CFN_LINT=(cfn-lint)
elif [ -n "${GP_PYTHON:-}" ] && "$GP_PYTHON" -c 'import cfnlint' 2>/dev/null; then
  CFN_LINT=("$GP_PYTHON" -m cfnlint)
else
  echo "infra/check.sh: cfn-lint not found: put it on PATH or set GP_PYTHON to a python with cfn-lint installed" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== cfn-lint template.yaml"
AWS_DEFAULT_REGION=us-east-1 "${CFN_LINT[@]}" template.yaml

echo "== sam validate --lint"
SAM="${GP_SAM:-$(command -v sam || true)}"
if [ -z "$SAM" ]; then
  echo "infra/check.sh: the SAM CLI not found: put sam on PATH or set GP_SAM (pip install aws-sam-cli)" >&2
  exit 1
fi
# Offline: the SAM transform and cfn-lint run locally; no credentials are needed.
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 "$SAM" validate --lint --template-file template.yaml

echo "== IAM: parliament over every policy after the SAM transform; every SDK call in src/ granted"
# Offline: samtranslator and parliament (with AWS's authorization data it ships) from the venv.
AWS_DEFAULT_REGION=us-east-1 "$PY" infra/iam_check.py --verbose
AWS_DEFAULT_REGION=us-east-1 "$PY" infra/test_iam_check.py

echo "== backfill state machine"
# Structure, error classes (src/error_class.rs), and the Step Functions limits for a 1,100-day
# plan; the template's rule BackfillMaxConcurrency <= ReservedConcurrency for every pair.
"$PY" infra/asl_check.py infra/backfill.asl.json --template template.yaml \
  --emit-template "$tmp/asl-template.json"
AWS_DEFAULT_REGION=us-east-1 "${CFN_LINT[@]}" "$tmp/asl-template.json"

echo "== generated Glue tables and named queries"
# The schema comes from the code itself, so the Glue tables cannot drift from the files.
if [ -n "${GP_BIN:-}" ]; then
  "$GP_BIN" schema --format json >"$tmp/schema.json"
else
  cargo run -q --locked --bin genesys-parquet -- schema --format json >"$tmp/schema.json"
fi
schema="$tmp/schema.json"
"$PY" infra/gen_glue_tables.py --schema "$schema" --check template.yaml

echo "== generator self-test"
"$PY" infra/test_gen_glue_tables.py

echo "infra/check.sh: ok"

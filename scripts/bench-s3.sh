#!/usr/bin/env bash
# Throughput and peak RSS of `convert` to a local folder, to S3 (moto on 127.0.0.1) and to S3 with
# a Glue catalog (moto too), on the same input in the same run.
#
# usage: scripts/bench-s3.sh PAGES.ndjson   (after `cargo build --release`; `bash .ci/run` installs
# moto into ~/.cache/genesys-parquet/venv; `GP_BENCH_KEEP_INPUT=DIR cargo bench --bench convert`
# keeps the generated pages to reuse here; needs /usr/bin/time, Debian package `time`)
set -euo pipefail
IN=$(realpath "${1:?usage: scripts/bench-s3.sh PAGES.ndjson}")
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/genesys-parquet}
V=${GP_CACHE:-$HOME/.cache/genesys-parquet}/venv/bin
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
$V/moto_server -H 127.0.0.1 -p $port >/dev/null 2>&1 &
moto=$!
tmp=$(mktemp -d)
trap 'kill $moto; rm -rf "$tmp"' EXIT
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
  sleep 0.2
done
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_ENDPOINT_URL_GLUE=http://127.0.0.1:$port
$V/python - "$port" "$BIN" <<'PY'
import sys, json, subprocess, boto3
port = sys.argv[1]
url = f"http://127.0.0.1:{port}"
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
s3.create_bucket(Bucket="bench")
glue = boto3.client("glue", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
glue.create_database(DatabaseInput={"Name": "gp"})
schema = json.loads(subprocess.check_output([sys.argv[2], "schema", "--format", "json"]))
for t in schema["tables"]:
    glue.create_table(DatabaseName="gp", TableInput={"Name": t["name"], "StorageDescriptor": {"Location": f"s3://bench/gp/{t['name']}/", "Columns": [{"Name": "conversation_id", "Type": "string"}]}, "PartitionKeys": [{"Name": "conversation_date", "Type": "string"}]})
PY
# The benchmark's pages hold one day (convert replaces only the days it is told it covers).
DAY=${GP_BENCH_DAY:-2026-10-20}
END=$(date -u -d "$DAY + 1 day" +%F)
run() { /usr/bin/time -f "%e s, peak %M KiB" "$@" >/dev/null 2>"$tmp/time"; tail -1 "$tmp/time"; }
cover=(--start "$DAY" --end "$END")
echo "local:";   run $BIN convert "${cover[@]}" --out "$tmp/local" "$IN"
echo "s3:";      run $BIN convert "${cover[@]}" --out s3://bench/p --s3-endpoint http://127.0.0.1:$port "$IN"
echo "catalog:"; run $BIN convert "${cover[@]}" --out s3://bench/gp --s3-endpoint http://127.0.0.1:$port --glue-database gp "$IN"

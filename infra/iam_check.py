#!/usr/bin/env python3
"""Offline IAM checks of template.yaml, on the policies as deployed (after the SAM transform).

1. Lint: every policy document of the transformed template (role policies, SAM policy templates
   such as LambdaInvokePolicy once expanded, trust policies, bucket/queue/topic policies) goes
   through parliament, which checks it against AWS's own authorization data (the service
   authorization reference, shipped inside the PyPI package: nothing is downloaded). Unknown
   actions, condition keys an action does not support, resources of the wrong type for an action
   and malformed policies fail the check.
2. Calls: every AWS SDK call the Rust code can make is found by scanning src/ for the operations
   of the `aws-sdk-*` crates it depends on; each must be in infra/aws_calls.json (an unmapped call
   fails), which says which IAM actions it needs on which resources and with which request
   context (e.g. `s3:prefix`). A small policy evaluator then asserts the function's role allows
   each, on the bucket, prefix, secret and Glue tables the deployed configuration points the code
   at. The same is done for what Step Functions (the backfill definition) and EventBridge
   Scheduler (the nightly target) call with their roles.

Both run for every deployment variant that changes a policy: PartitionMode projection/catalog
times SSE-S3/SSE-KMS. Intrinsics are rendered to plausible ARNs (account 123456789012,
us-east-1, stack genesys-parquet).

Usage: iam_check.py [--template template.yaml] [--verbose]
Needs: aws-sam-translator and parliament (tests/requirements.txt).
"""
import argparse
import copy
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGION, ACCOUNT, PARTITION, STACK = "us-east-1", "123456789012", "aws", "genesys-parquet"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# Deployment variants: parameter values that change a policy.
VARIANTS = [
    {"PartitionMode": "projection"},
    {"PartitionMode": "catalog"},
    {"PartitionMode": "projection", "DataKmsKeyArn": KMS_KEY},
    {"PartitionMode": "catalog", "DataKmsKeyArn": KMS_KEY},
]

# parliament findings that fail the check. Everything parliament reports in the groups ERROR,
# MALFORMED and INVALID, plus resource/action mismatches.
FAIL_ISSUES = {
    "EXCEPTION", "MALFORMED_JSON", "MALFORMED", "DUPLICATE_SID", "UNKNOWN_PRINCIPAL",
    "UNKNOWN_FEDERATION_SOURCE", "MISMATCHED_TYPE_OPERATION_TO_NULL", "MISMATCHED_TYPE",
    "MISMATCHED_TYPE_BUT_USABLE", "UNKNOWN_ACTION", "UNKNOWN_PREFIX",
    "UNKNOWN_CONDITION_FOR_ACTION", "UNKNOWN_OPERATOR", "INVALID_ARN", "RESOURCE_MISMATCH",
    "INVALID_SID", "INVALID_VERSION",
}
# Not failed on: NO_VERSION (SAM writes its own generated policies without a Version; that
# only matters to policy variables, which no policy here uses) and the advisory groups
# (RESOURCE_STAR, privilege escalation hints), which parliament rates as review items.

# The authorization reference marks several resource types of some actions as required where a
# request names one of them: parliament then wants a resource of each. These are the ones
# where the statement rightly names only the other (the backfill's child executions are
# STANDARD executions, never express ones).
ONE_OF_RESOURCE_TYPES = {
    ("states:DescribeExecution", "arn:*:states:*:*:express:*:*:*"),
}

# Managed policies SAM attaches, with their documented content (the check has no AWS access).
MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]}],
    },
}


class CheckError(Exception):
    pass


# --------------------------------------------------------------------------- the template

def load_template(path):
    from samtranslator.yaml_helper import yaml_parse
    return yaml_parse(Path(path).read_text(encoding="utf-8"))


def sam_transform(template, params):
    """The SAM transform, offline (no managed-policy lookups, local paths replaced)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            return {}

    t = copy.deepcopy(template)
    for res in t["Resources"].values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = "s3://artifacts/code.zip"
        if res["Type"] == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            props["DefinitionUri"] = {"Bucket": "artifacts", "Key": "definition.json"}
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    # The translator's usage metrics go nowhere here; without this it warns about them.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
    return transform(t, params, NoManagedPolicies())


class Renderer:
    """Resolves intrinsics to plausible values for one set of parameter values."""

    def __init__(self, template, params):
        self.t = template
        self.params = {}
        for name, p in template.get("Parameters", {}).items():
            v = params.get(name, p.get("Default"))
            if v is None:
                raise CheckError(f"parameter {name} has no default: give it a value in VARIANTS")
            self.params[name] = str(v)
        self.pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": PARTITION,
                       "AWS::StackName": STACK, "AWS::URLSuffix": "amazonaws.com",
                       "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/x"}
        self.conditions = {}
        for name in template.get("Conditions", {}):
            self.condition(name)

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.render(self.t["Conditions"][name]))
        return self.conditions[name]

    def _physical(self, logical):
        return f"{STACK}-{logical}-1A2B3C4D5E6F"

    def ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        res = self.t["Resources"].get(name)
        if res is None:
            raise CheckError(f"!Ref {name}: no such parameter or resource")
        typ, props = res["Type"], res.get("Properties", {})
        if typ == "AWS::S3::Bucket":
            return props.get("BucketName") and self.render(props["BucketName"]) or self._physical(name).lower()
        if typ == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{self._physical(name)}-AbCdEf"
        if typ == "AWS::Lambda::Function":
            return self.render(props["FunctionName"]) if "FunctionName" in props else self._physical(name)
        if typ == "AWS::StepFunctions::StateMachine":
            sm = self.render(props["StateMachineName"]) if "StateMachineName" in props else self._physical(name)
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{sm}"
        if typ == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{self._physical(name)}"
        if typ == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self._physical(name)}"
        if typ == "AWS::Glue::Database":
            return self.render(props["DatabaseInput"]["Name"])
        if typ in ("AWS::Logs::LogGroup",):
            return self.render(props["LogGroupName"]) if "LogGroupName" in props else self._physical(name)
        if typ in ("AWS::IAM::Role", "AWS::Athena::WorkGroup", "AWS::Scheduler::Schedule",
                   "AWS::KMS::Key", "AWS::Glue::Table", "AWS::CloudWatch::Alarm"):
            return self.render(props["Name"]) if "Name" in props else self._physical(name)
        raise CheckError(f"!Ref {name}: no plausible value for a {typ}; teach iam_check.py")

    def getatt(self, name, attr):
        res = self.t["Resources"].get(name)
        if res is None:
            raise CheckError(f"!GetAtt {name}.{attr}: no such resource")
        typ = res["Type"]
        ref = self.ref(name)
        arns = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{ref}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{ref}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{ref.rsplit('/', 1)[-1]}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{ref}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{ref}:*",
            "AWS::StepFunctions::StateMachine": ref,
            "AWS::SNS::Topic": ref,
            "AWS::Scheduler::Schedule": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{ref}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{ref}",
        }
        if attr == "Arn" and typ in arns:
            return arns[typ]
        if typ == "AWS::SQS::Queue" and attr == "QueueName":
            return ref.rsplit("/", 1)[-1]
        if typ == "AWS::StepFunctions::StateMachine" and attr == "Name":
            return ref.rsplit(":", 1)[-1]
        raise CheckError(f"!GetAtt {name}.{attr}: no plausible value for a {typ}; teach iam_check.py")

    def sub(self, text, extra):
        def one(m):
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in extra:
                return str(extra[inner])
            if "." in inner and inner.split(".", 1)[0] in self.t["Resources"]:
                return str(self.getatt(*inner.split(".", 1)))
            return str(self.ref(inner))
        return re.sub(r"\$\{([^}]+)\}", one, text)

    def render(self, node):
        if isinstance(node, list):
            out = [self.render(x) for x in node]
            return [x for x in out if x is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (k, v), = node.items()
            if k == "Ref":
                return NO_VALUE if v == "AWS::NoValue" else self.ref(v)
            if k == "Fn::GetAtt":
                name, attr = v if isinstance(v, list) else v.split(".", 1)
                return self.getatt(name, attr)
            if k == "Fn::Sub":
                if isinstance(v, list):
                    return self.sub(v[0], {n: self.render(x) for n, x in v[1].items()})
                return self.sub(v, {})
            if k == "Fn::If":
                cond, yes, no = v
                return self.render(yes if self.condition(cond) else no)
            if k == "Fn::Equals":
                a, b = (self.render(x) for x in v)
                return str(a) == str(b)
            if k == "Fn::Not":
                return not self.render(v[0])
            if k == "Fn::And":
                return all(self.render(x) for x in v)
            if k == "Fn::Or":
                return any(self.render(x) for x in v)
            if k == "Condition":
                return self.condition(v)
            if k == "Fn::Join":
                sep, items = v
                return sep.join(str(x) for x in self.render(items))
            if k == "Fn::Select":
                i, items = v
                return self.render(items)[int(self.render(i))]
            if k == "Fn::Split":
                sep, s = v
                return str(self.render(s)).split(sep)
            if k == "Fn::Base64":
                import base64
                return base64.b64encode(str(self.render(v)).encode()).decode()
            if k.startswith("Fn::"):
                raise CheckError(f"intrinsic {k} not supported by iam_check.py")
        out = {}
        for k, v in node.items():
            r = self.render(v)
            if r is not NO_VALUE:
                out[k] = r
        return out


class _NoValue:
    def __repr__(self):
        return "AWS::NoValue"


NO_VALUE = _NoValue()


def deployed(template, params):
    """(transformed template, renderer, rendered resources that exist under these parameters)."""
    out = sam_transform(template, params)
    r = Renderer(out, params)
    resources = {}
    for name, res in out["Resources"].items():
        if "Condition" in res and not r.condition(res["Condition"]):
            continue
        resources[name] = {"Type": res["Type"], "Properties": r.render(res.get("Properties", {})),
                           "_ref": r.ref(name) if res["Type"] == "AWS::S3::Bucket" else None}
    return out, r, resources


def policies(resources):
    """Every policy document: (where, document, is_resource_policy)."""
    found = []
    for name, res in resources.items():
        typ, props = res["Type"], res["Properties"]
        if typ == "AWS::IAM::Role":
            # A trust policy has no Resource: it is the role's own. Lint it as such.
            trust = copy.deepcopy(props["AssumeRolePolicyDocument"])
            for st in _as_list(trust["Statement"]):
                st.setdefault("Resource", f"arn:aws:iam::{ACCOUNT}:role/{props.get('RoleName', name)}")
            found.append((f"{name} trust policy", trust, True))
            for p in props.get("Policies", []):
                found.append((f"{name}/{p['PolicyName']}", p["PolicyDocument"], False))
        elif typ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            found.append((name, props["PolicyDocument"], False))
        elif typ in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy",
                     "AWS::KMS::Key"):
            doc = props.get("PolicyDocument") or props.get("KeyPolicy")
            found.append((f"{name} resource policy", doc, True))
    return found


def role_documents(resources, role):
    props = resources[role]["Properties"]
    docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
    for arn in props.get("ManagedPolicyArns", []):
        if arn not in MANAGED:
            raise CheckError(f"{role}: managed policy {arn} unknown to iam_check.py (add its content)")
        docs.append(MANAGED[arn])
    return docs


# --------------------------------------------------------------------------- 1. parliament

def lint(resources, label):
    from parliament import analyze_policy_string
    problems = []
    for where, doc, is_resource in policies(resources):
        text = json.dumps(doc, indent=1)
        policy = analyze_policy_string(text, include_community_auditors=False,
                                       ignore_private_auditors=True)
        for f in policy.findings:
            detail = f.detail
            if f.issue == "RESOURCE_MISMATCH":
                detail = [d for d in detail if (d["action"], d["required_format"]) not in ONE_OF_RESOURCE_TYPES]
                if not detail:
                    continue
            if f.issue in FAIL_ISSUES:
                problems.append(f"[{label}] {where}: {f.issue}: {detail}")
    return problems


# --------------------------------------------------------------------------- IAM evaluation

def _as_list(x):
    return x if isinstance(x, list) else [x]


def _glob(pattern, value, case=True):
    if not case:
        pattern, value = pattern.lower(), value.lower()
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.S) is not None


def _condition_holds(cond, ctx):
    """IAM condition evaluation for the operators the template uses (unknown ones fail loudly)."""
    for op, keys in cond.items():
        base, if_exists = (op[:-8], True) if op.endswith("IfExists") else (op, False)
        for key, wanted in keys.items():
            wanted = [str(w).lower() if isinstance(w, bool) else str(w) for w in _as_list(wanted)]
            have = ctx.get(key)
            if have is None:
                if base == "Null":
                    if not any(w == "true" for w in wanted):
                        return False
                    continue
                if if_exists or base.startswith(("StringNot", "ArnNot")):
                    continue
                return False
            if base == "Null":
                if not any(w == "false" for w in wanted):
                    return False
                continue
            values = _as_list(have)
            if base in ("StringEquals", "ArnEquals"):
                ok = any(v in wanted for v in values)
            elif base == "StringEqualsIgnoreCase":
                ok = any(v.lower() in [w.lower() for w in wanted] for v in values)
            elif base in ("StringLike", "ArnLike"):
                ok = any(_glob(w, v) for v in values for w in wanted)
            elif base in ("StringNotEquals", "ArnNotEquals"):
                ok = all(v not in wanted for v in values)
            elif base in ("StringNotLike", "ArnNotLike"):
                ok = not any(_glob(w, v) for v in values for w in wanted)
            elif base == "Bool":
                ok = any(str(v).lower() in wanted for v in values)
            else:
                raise CheckError(f"condition operator {op} not supported by iam_check.py")
            if not ok:
                return False
    return True


def _statement_applies(st, action, resource, ctx):
    if "Action" in st:
        if not any(_glob(a, action, case=False) for a in _as_list(st["Action"])):
            return False
    elif any(_glob(a, action, case=False) for a in _as_list(st["NotAction"])):
        return False
    if "Resource" in st:
        if not any(_glob(r, resource) for r in _as_list(st["Resource"])):
            return False
    elif "NotResource" in st and any(_glob(r, resource) for r in _as_list(st["NotResource"])):
        return False
    return _condition_holds(st.get("Condition", {}), ctx)


def allowed(docs, action, resource, ctx):
    """Identity-policy decision: an Allow applies and no Deny does."""
    statements = [st for d in docs for st in _as_list(d["Statement"])]
    if any(st["Effect"] == "Deny" and _statement_applies(st, action, resource, ctx) for st in statements):
        return False
    return any(st["Effect"] == "Allow" and _statement_applies(st, action, resource, ctx)
               for st in statements)


# --------------------------------------------------------------------------- 2. SDK calls

def _host_target():
    out = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout
    return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("host:"))


def sdk_operations():
    """{crate: {operation}} for every aws-sdk-* crate the package depends on directly."""
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform",
         _host_target()],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    root_pkg = next(p for p in meta["packages"] if p["id"] in meta["workspace_members"])
    deps = {d["name"] for d in root_pkg["dependencies"] if d["name"].startswith("aws-sdk-")}
    ops = {}
    for p in meta["packages"]:
        if p["name"] in deps:
            op_dir = Path(p["manifest_path"]).parent / "src" / "operation"
            ops[p["name"]] = {d.name for d in op_dir.iterdir() if d.is_dir()}
    missing = deps - set(ops)
    if missing:
        raise CheckError(f"sources of {sorted(missing)} not found (run cargo fetch)")
    return ops


def scan_calls(ops):
    """{(crate, operation): [file:line, ...]}: every `.operation()` of an SDK client in src/.

    Fluent builders take no arguments, so a call is `.op()`, in a file that names the crate
    (its client's type); an operation name of two crates is attributed by the crates the file
    names.
    """
    calls = {}
    by_op = {}
    for crate, names in ops.items():
        for op in names:
            by_op.setdefault(op, set()).add(crate)
    for path in sorted((ROOT / "src").rglob("*.rs")):
        text = path.read_text(encoding="utf-8")
        named = {c for c in ops if c.replace("-", "_") in text}
        if not named:
            # A file that names no SDK crate holds no SDK client (and its own methods may
            # share an operation's name, e.g. the Genesys client's).
            continue
        for m in re.finditer(r"\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)", text):
            op = m.group(1)
            crates = by_op.get(op, set())
            if not crates:
                continue
            crates = crates & named or crates
            line = text.count("\n", 0, m.start()) + 1
            for crate in crates:
                calls.setdefault((crate, op), []).append(f"{path.relative_to(ROOT)}:{line}")
    return calls


def check_calls(resources, renderer, table, label, asl_path, verbose):
    problems = []
    fn = next(n for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function")
    fprops = resources[fn]["Properties"]
    env = fprops["Environment"]["Variables"]
    m = re.fullmatch(r"s3://([^/]+)/(.+)", env["GP_OUT"])
    if not m:
        raise CheckError(f"GP_OUT {env['GP_OUT']!r} is not s3://bucket/prefix")
    bucket, prefix = m.group(1), m.group(2).strip("/")
    glue_db = env.get("GP_GLUE_DATABASE", "")
    kms_key = None
    for r in resources.values():
        if r["Type"] == "AWS::S3::Bucket" and r.get("_ref") == bucket:
            for rule in r["Properties"].get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
                sse = rule.get("ServerSideEncryptionByDefault", {})
                if sse.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
                    kms_key = sse["KMSMasterKeyID"]
    tables = sorted(r["Properties"]["TableInput"]["Name"] for r in resources.values()
                    if r["Type"] == "AWS::Glue::Table")
    role_res, docs = role_by_arn(resources, renderer, fprops["Role"])

    subst = {
        "bucket": bucket, "prefix": prefix, "region": REGION, "account": ACCOUNT,
        "secret": env.get("GENESYS_SECRET_ID", ""), "database": glue_db,
    }

    def expand(pattern, extra=None):
        vals = dict(subst, **(extra or {}))
        return re.sub(r"\{(\w+)\}", lambda mm: vals[mm.group(1)], pattern)

    ops = sdk_operations()
    calls = scan_calls(ops)
    granted = []
    for (crate, op), sites in sorted(calls.items()):
        entry = table["calls"].get(f"{crate}::{op}")
        if entry is None:
            problems.append(f"{crate} {op}() at {', '.join(sites)} is not in infra/aws_calls.json: "
                            "map it to the IAM actions it needs")
            continue
        when = entry.get("when", "always")
        if when == "catalog" and not glue_db:
            continue
        for need in entry["needs"]:
            per_table = "{table}" in json.dumps(need)
            for t in (tables if per_table else [None]):
                extra = {"table": t} if t else {}
                for res in need["resources"]:
                    arn = expand(res, extra)
                    ctx = {k: expand(v, extra) for k, v in need.get("context", {}).items()}
                    for action in need["actions"]:
                        ok = allowed(docs, action, arn, ctx)
                        granted.append((action, f"{crate} {op}()", ok))
                        if not ok:
                            problems.append(f"[{label}] {crate} {op}() ({sites[0]}) needs {action} on "
                                            f"{arn} with {ctx or 'no condition keys'}: {role_res} does not allow it")
        if kms_key:
            for action in entry.get("kms", []):
                ctx = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
                ok = allowed(docs, action, kms_key, ctx)
                granted.append((action, f"{crate} {op}() (SSE-KMS)", ok))
                if not ok:
                    problems.append(f"[{label}] {crate} {op}() writes/reads SSE-KMS objects: needs {action} "
                                    f"on {kms_key} via S3; {role_res} does not allow it")
    # Least privilege: every action the template grants the function itself is needed by a call.
    needed = {a for a, _, _ in granted}
    own = [p for p in resources[role_res]["Properties"].get("Policies", [])
           if p["PolicyName"].startswith(f"{fn}RolePolicy")]
    for p in own:
        for st in _as_list(p["PolicyDocument"]["Statement"]):
            for a in _as_list(st.get("Action", [])):
                if st["Effect"] == "Allow" and not any(_glob(a, n, case=False) for n in needed):
                    problems.append(f"[{label}] {role_res} grants {a} (statement {st.get('Sid', '?')}) "
                                    "but no call in src/ needs it here: remove it")
    stale = sorted(set(table["calls"]) - {f"{c}::{o}" for c, o in calls})
    if stale:
        problems.append(f"infra/aws_calls.json maps calls the code no longer makes: {stale}")

    # Lambda itself, for the function: logs, and the async on-failure destination.
    for res in resources.values():
        if res["Type"] == "AWS::Lambda::EventInvokeConfig":
            dest = res["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            if dest and not allowed(docs, "sqs:SendMessage", dest, {}):
                problems.append(f"[{label}] the on-failure destination {dest} needs sqs:SendMessage for {role_res}")
    log_group = fprops.get("LoggingConfig", {}).get("LogGroup", f"/aws/lambda/{fprops.get('FunctionName')}")
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{log_group}:log-stream:2026/01/01/x"
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        if not allowed(docs, action, stream, {}):
            problems.append(f"[{label}] the function's logs need {action} on {stream}")

    problems += check_state_machine(resources, renderer, label, asl_path)
    problems += check_scheduler(resources, renderer, label)
    return problems, granted


def role_by_arn(resources, renderer, arn):
    """(logical id, policy documents) of the template's role with this ARN."""
    role = arn.rsplit("/", 1)[-1]
    name = next(n for n, r in resources.items() if r["Type"] == "AWS::IAM::Role" and renderer.ref(n) == role)
    return name, role_documents(resources, name)


def check_state_machine(resources, renderer, label, asl_path):
    problems = []
    for name, res in resources.items():
        if res["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        props = res["Properties"]
        role, docs = role_by_arn(resources, renderer, props["RoleArn"])
        sm_arn = renderer.ref(name)
        subst = {k: str(v) for k, v in props.get("DefinitionSubstitutions", {}).items()}
        text = Path(asl_path).read_text(encoding="utf-8")
        text = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: subst[m.group(1)], text)
        asl = json.loads(text)
        for action, arn, why in state_machine_needs(asl, sm_arn):
            NEEDED_BY_OTHERS.setdefault(role, {}).setdefault(action, set()).add(why)
            if not allowed(docs, action, arn, {}):
                problems.append(f"[{label}] {name}: {why} needs {action} on {arn}: {role} does not allow it")
    return problems


# {role: {action: {why}}} for the roles other than the function's (printed by --verbose).
NEEDED_BY_OTHERS = {}


def state_machine_needs(machine, sm_arn):
    """(action, resource, why) for what a definition makes Step Functions call."""
    sm_name = sm_arn.rsplit(":", 1)[-1]
    needs = []

    def walk(states):
        for sname, st in states.items():
            if st["Type"] == "Task":
                r = st["Resource"]
                if r.startswith("arn:aws:states:::lambda:invoke"):
                    needs.append(("lambda:InvokeFunction", st["Parameters"]["FunctionName"], f"state {sname}"))
                elif r.startswith("arn:aws:states:::aws-sdk:sfn:"):
                    api = r.split(":")[-1]
                    action = "states:" + api[0].upper() + api[1:]
                    if action in ("states:DescribeMapRun",):
                        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:{sm_name}/label:1a2b"
                    else:
                        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{sm_name}:exec-1"
                    needs.append((action, arn, f"state {sname}"))
                else:
                    raise CheckError(f"state {sname}: task resource {r} unknown to iam_check.py")
            if st["Type"] == "Map":
                proc = st.get("ItemProcessor") or st.get("Iterator")
                if proc.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
                    needs.append(("states:StartExecution", sm_arn, f"distributed map {sname}"))
                    # Child executions: execution:<machine>/<map label or run id>:<id>.
                    child = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{sm_name}/{st.get('Label', 'a1b2')}:1a2b"
                    needs.append(("states:DescribeExecution", child, f"distributed map {sname}"))
                    needs.append(("states:StopExecution", child, f"distributed map {sname}"))
                    if "ResultWriter" in st or "ItemReader" in st:
                        raise CheckError(f"{sname}: ResultWriter/ItemReader need S3 rules in iam_check.py")
                walk(proc["States"])
            if st["Type"] == "Parallel":
                for b in st["Branches"]:
                    walk(b["States"])

    walk(machine["States"])
    return needs


def check_scheduler(resources, renderer, label):
    problems = []
    for name, res in resources.items():
        if res["Type"] != "AWS::Scheduler::Schedule":
            continue
        target = res["Properties"]["Target"]
        rname, docs = role_by_arn(resources, renderer, target["RoleArn"])
        NEEDED_BY_OTHERS.setdefault(rname, {}).setdefault("lambda:InvokeFunction", set()).add(f"{name} target")
        if target.get("DeadLetterConfig"):
            NEEDED_BY_OTHERS[rname].setdefault("sqs:SendMessage", set()).add(f"{name} dead-letter queue")
        if target["Arn"].startswith("arn:aws:lambda:") and not allowed(docs, "lambda:InvokeFunction", target["Arn"], {}):
            problems.append(f"[{label}] {name}: invoking {target['Arn']} needs lambda:InvokeFunction for {rname}")
        dlq = target.get("DeadLetterConfig", {}).get("Arn")
        if dlq and not allowed(docs, "sqs:SendMessage", dlq, {}):
            problems.append(f"[{label}] {name}: its dead-letter queue needs sqs:SendMessage for {rname}")
    return problems


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--template", default=str(ROOT / "template.yaml"))
    ap.add_argument("--asl", default=str(ROOT / "infra" / "backfill.asl.json"))
    ap.add_argument("--calls", default=str(ROOT / "infra" / "aws_calls.json"))
    ap.add_argument("--lint-only", action="store_true", help="only the parliament lint")
    ap.add_argument("--verbose", action="store_true", help="list every call and the action it needs")
    args = ap.parse_args()

    template = load_template(args.template)
    table = json.loads(Path(args.calls).read_text(encoding="utf-8"))
    problems = []
    summary = {}
    for params in VARIANTS:
        params = {k: v for k, v in params.items() if k in template.get("Parameters", {})}
        label = ",".join(f"{k}={'<key>' if v == KMS_KEY else v}" for k, v in params.items())
        _, renderer, resources = deployed(template, params)
        found = lint(resources, label)
        problems += found
        n = len(policies(resources))
        if not args.lint_only:
            p, granted = check_calls(resources, renderer, table, label, args.asl, args.verbose)
            problems += p
            for action, call, ok in granted:
                summary.setdefault(action, set()).add(call)
        print(f"iam_check: [{label}] {n} policies linted")
    if args.verbose and summary:
        print("iam_check: the function's actions and the calls that need them:")
        for action in sorted(summary):
            print(f"  {action:38} {', '.join(sorted(summary[action]))}")
        for role, needs in sorted(NEEDED_BY_OTHERS.items()):
            print(f"iam_check: {role}:")
            for action in sorted(needs):
                print(f"  {action:38} {', '.join(sorted(needs[action]))}")
    if problems:
        for p in dict.fromkeys(problems):
            print(f"iam_check: {p}", file=sys.stderr)
        sys.exit(1)
    print("iam_check: ok")


if __name__ == "__main__":
    try:
        main()
    except CheckError as e:
        print(f"iam_check: {e}", file=sys.stderr)
        sys.exit(1)

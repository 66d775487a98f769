#!/usr/bin/env python3
"""Checks of infra/backfill.asl.json: structure, error handling, and Step Functions' limits.

Checks what cfn-lint cannot see (the definition is a separate file):
- it parses; every `${...}` is a DefinitionSubstitution the template provides; every
  Next/Default/Catch target exists and every state is reachable;
- error names are the Rust error classes (src/error_class.rs, parsed here, so they are defined
  once) or AWS's own (`States.*`, `Lambda.*`, `Sandbox.*`); every retryable class and every
  AWS error that can pass on a retry is retried with back-off, the others are not retried;
- a runtime timeout (`Sandbox.Timedout`, `Lambda.Unknown`, `States.Timeout`) is retried only
  after a dead run's lease has expired (no jitter shortening the wait), and Step Functions'
  own task timeout is longer than the function's;
- a run-wide error stops the whole backfill at once: it fails its child, the Map tolerates no
  failed child, and the Map's failure ends the execution; every other error of a day is
  caught and recorded, so the others go on;
- limits, computed for a 1,100-day plan (three years) and for the longest plan the definition
  lets through, in the worst case (every day failing after every retry, with the longest
  error name it records): the largest state payload (256 KiB) and the event history of the
  execution and of each child (25,000 events);
- with `--template`: BackfillMaxConcurrency can never exceed ReservedConcurrency (the
  template's Rules are evaluated for every pair of allowed values).
With `--emit-template OUT`, also writes a small CloudFormation template with the substituted
definition inline, so cfn-lint validates it against the Amazon States Language schema.
"""
import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBSTITUTIONS = {"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:gp-extract",
                 "MaxConcurrency": "2"}

PAYLOAD_LIMIT = 256 * 1024          # bytes, UTF-8: state input/output, task result
HISTORY_LIMIT = 25_000              # events per execution
THREE_YEARS = 1_100                 # days
# How long a dead run's lease can outlive it. Today a Lambda lease expires a minute after the
# invocation's deadline (src/lambda.rs lease_ttl); the heartbeat-renewed lease of the commit
# protocol lives about two minutes past its last renewal. A minute of margin on top.
LEASE_OUTLIVES_DEAD_RUN_S = 120 + 60
# Errors AWS raises that can pass on a retry: the Lambda service, and the runtime killing
# (or Step Functions giving up on) an invocation.
AWS_RETRYABLE = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                 "Lambda.TooManyRequestsException", "Sandbox.Timedout", "Lambda.Unknown", "States.Timeout"}
RUNTIME_TIMEOUT = {"Sandbox.Timedout", "Lambda.Unknown", "States.Timeout"}
# Classes that cannot depend on the day: the first one stops the backfill. Store.Permanent is
# one: every day writes to the same bucket and prefix, and a store refusing access keeps that
# class (src/pipeline.rs error_class) rather than Run.Fatal.
RUN_WIDE = {"Run.Fatal", "Config.Invalid", "Store.Permanent"}
# The lambda:invoke task result around the function's payload (ExecutedVersion, headers,
# status code...), generously.
INVOKE_ENVELOPE = 2048


def fail(msg):
    print(f"asl_check: {msg}", file=sys.stderr)
    sys.exit(1)


def error_classes(path):
    """(names, retryable names) of src/error_class.rs."""
    text = Path(path).read_text(encoding="utf-8")
    names = dict(re.findall(r'ErrorClass::(\w+)\s*=>\s*"([^"]+)"', text))
    m = re.search(r"fn is_retryable[^{]*\{\s*matches!\(\s*self,(.*?)\)", text, re.S)
    if not names or not m:
        fail(f"cannot read the error classes of {path}")
    retryable = {names[v] for v in re.findall(r"ErrorClass::(\w+)", m.group(1))}
    return set(names.values()), retryable


def substitute(text):
    used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))
    unknown = used - set(SUBSTITUTIONS)
    if unknown:
        fail(f"unknown DefinitionSubstitutions {sorted(unknown)}")
    missing = set(SUBSTITUTIONS) - used
    if missing:
        fail(f"DefinitionSubstitutions never used: {sorted(missing)}")
    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: SUBSTITUTIONS[m.group(1)], text)


def check_machine(machine, where):
    states = machine["States"]
    if machine["StartAt"] not in states:
        fail(f"{where}: StartAt {machine['StartAt']} is not a state")
    edges = {}
    for name, st in states.items():
        targets = [st.get("Next"), st.get("Default")]
        targets += [c["Next"] for c in st.get("Choices", [])]
        targets += [c["Next"] for c in st.get("Catch", [])]
        targets = [t for t in targets if t]
        for t in targets:
            if t not in states:
                fail(f"{where}: state {name} goes to unknown state {t}")
        if st["Type"] not in ("Succeed", "Fail", "Choice") and not st.get("End") and not st.get("Next"):
            fail(f"{where}: state {name} has neither Next nor End")
        edges[name] = targets
    seen, todo = set(), [machine["StartAt"]]
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo += edges[s]
    if set(states) - seen:
        fail(f"{where}: unreachable states {sorted(set(states) - seen)}")


def first_retrier(task, error):
    for r in task.get("Retry", []):
        if error in r["ErrorEquals"] or "States.ALL" in r["ErrorEquals"]:
            return r
    return None


def first_catcher(task, error):
    for c in task.get("Catch", []):
        if error in c["ErrorEquals"] or "States.ALL" in c["ErrorEquals"]:
            return c
    return None


def check_names(machine, classes, where):
    def walk(states):
        for name, st in states.items():
            for rule in st.get("Retry", []) + st.get("Catch", []):
                for e in rule["ErrorEquals"]:
                    if e not in classes and not e.startswith(("States.", "Lambda.", "Sandbox.")):
                        fail(f"{where}: state {name} names {e!r}: neither an ErrorClass "
                             "(src/error_class.rs) nor an AWS error")
            proc = st.get("ItemProcessor") or st.get("Iterator")
            if proc:
                walk(proc["States"])
    walk(machine["States"])


def check_retries(task, name, classes, retryable):
    for e in sorted(retryable | AWS_RETRYABLE):
        r = first_retrier(task, e)
        if r is None or r.get("MaxAttempts", 3) == 0:
            fail(f"{name}: {e} can pass on a retry but is not retried")
        if r.get("BackoffRate", 2.0) < 1.5 or r.get("IntervalSeconds", 1) < 1:
            fail(f"{name}: retrier {r['ErrorEquals']} has no real back-off")
    for e in sorted(classes - retryable):
        r = first_retrier(task, e)
        if r is not None and r.get("MaxAttempts", 3) != 0:
            fail(f"{name}: {e} cannot pass on a retry but is retried")
    if not any("States.ALL" in c["ErrorEquals"] for c in task.get("Catch", [])):
        fail(f"{name}: no catch-all Catch")


def check_runtime_timeout(task, name, function_timeout):
    for e in sorted(RUNTIME_TIMEOUT):
        r = first_retrier(task, e)
        if r.get("JitterStrategy", "NONE") != "NONE":
            fail(f"{name}: {e} is retried with jitter, which can cut the wait below a lease's life")
        if r.get("IntervalSeconds", 1) < LEASE_OUTLIVES_DEAD_RUN_S:
            fail(f"{name}: {e} is retried after {r.get('IntervalSeconds', 1)} s, but a dead run's "
                 f"lease can live {LEASE_OUTLIVES_DEAD_RUN_S} s: the retry would find the day locked")
    if task.get("TimeoutSeconds", 99999999) <= function_timeout:
        fail(f"{name}: TimeoutSeconds {task.get('TimeoutSeconds')} must exceed the function's "
             f"timeout ({function_timeout} s), or Step Functions retries a run that still runs")


def attempts(task):
    """Most attempts of one task: every retrier exhausted in turn."""
    return 1 + sum(r.get("MaxAttempts", 3) for r in task.get("Retry", []))


def size(value):
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def plan_days(n):
    from datetime import date, timedelta
    d0 = date(2020, 1, 1)
    return [{"start": str(d0 + timedelta(i)), "end": str(d0 + timedelta(i + 1))} for i in range(n)]


def day_records(proc):
    """Every record a day's child can end with, as a template {date -> record} (worst case)."""
    st = proc["States"]
    task = st[proc["StartAt"]]
    out = []
    done = dict(task.get("ResultSelector", {}))
    if any(k.endswith(".$") for k in done):
        fail("ExtractDay must keep a fixed, small result (ResultSelector without paths)")
    out.append(lambda date, rec=done: rec)
    for c in task.get("Catch", []):
        target = st[c["Next"]]
        if target["Type"] == "Fail":
            continue
        params = target.get("Parameters", {})
        names = [e for e in c["ErrorEquals"] if e != "States.ALL"]
        if "error.$" in params and ("States.ALL" in c["ErrorEquals"]):
            fail(f"{c['Next']}: records an error name of unbounded length (States.ALL); record a fixed name")
        longest = max(names, key=len) if names else ""

        def rec(date, params=params, longest=longest):
            r = {}
            for k, v in params.items():
                if k == "date.$":
                    r["date"] = date
                elif k == "error.$":
                    r["error"] = longest
                elif k.endswith(".$"):
                    fail(f"a day's failure record takes {k} from the state: its size has no bound")
                else:
                    r[k] = v
            return r
        out.append(rec)
    return out


def limits(asl, n):
    """(largest payload in bytes, parent history events, child history events) for n days."""
    states = asl["States"]
    plan = states["PlanDays"]
    days = plan_days(n)
    base = {"start": days[0]["start"], "end": days[-1]["end"], "max_concurrency": 10}
    payloads = {"PlanDays task result": size({"days": days}) + INVOKE_ENVELOPE,
                "after PlanDays": size(dict(base, plan={"days": days, "count": n}))}
    m = states["ExtractDays"]
    proc = m["ItemProcessor"]
    worst = max((r(d["start"]) for r in day_records(proc) for d in days[:1]), key=size)
    results = [dict(worst, date=d["start"]) if "date" in worst else worst for d in days]
    payloads["Map result"] = size(results)
    if m["ResultPath"] == "$.plan.days":
        after = dict(base, plan={"days": results, "count": n})
    else:
        after = dict(base, plan={"days": days, "count": n}, **{m["ResultPath"][2:]: results})
    payloads["after ExtractDays"] = size(after)
    payloads["Summarise output"] = size(dict(start=base["start"], end=base["end"], days_total=n,
                                             failed_days=results))
    payloads["a day's input"] = size(days[0])

    task = proc["States"][proc["StartAt"]]
    # Child: started, task entered, per attempt scheduled+started+failed, exited, pass
    # entered+exited, succeeded.
    child = 1 + 1 + 3 * attempts(task) + 1 + 2 + 1
    # Parent: started, Configure 2, PlanDays entered + attempts + exited, PlanFits 2, the Map
    # (entered, started, MapRunStarted, MapRunSucceeded/Failed, succeeded/failed, exited),
    # Summarise 2, AnyDayFailed 2, the end state 1, execution end 1.
    parent = 1 + 2 + 1 + 3 * attempts(plan) + 1 + 2 + 6 + 2 + 2 + 1 + 1
    if proc.get("ProcessorConfig", {}).get("Mode", "INLINE") != "DISTRIBUTED":
        # Inline: every iteration's events land in the parent's history.
        parent += n * (2 + child - 2)
        child = 0
    return max(payloads.items(), key=lambda kv: kv[1]), payloads, parent, child


def plan_bound(states):
    """The longest plan the definition lets into the Map (PlanFits), or None."""
    for c in states.get("PlanFits", {}).get("Choices", []):
        if c.get("Variable") == "$.plan.count" and "NumericGreaterThan" in c and \
                states[c["Next"]]["Type"] == "Fail":
            return int(c["NumericGreaterThan"])
    return None


def check_concurrency_rules(template_path):
    from samtranslator.yaml_helper import yaml_parse
    t = yaml_parse(Path(template_path).read_text(encoding="utf-8"))
    p = t["Parameters"]
    subst = t["Resources"]["BackfillStateMachine"]["Properties"]["DefinitionSubstitutions"]
    if subst.get("MaxConcurrency") != {"Ref": "BackfillMaxConcurrency"}:
        fail("the backfill's MaxConcurrency must be the BackfillMaxConcurrency parameter")

    def ev(node, params):
        if isinstance(node, list):
            return [ev(x, params) for x in node]
        if not isinstance(node, dict):
            return str(node)
        (k, v), = node.items()
        if k == "Ref":
            return str(params[v])
        if k == "Fn::Equals":
            return ev(v[0], params) == ev(v[1], params)
        if k == "Fn::Contains":
            return ev(v[1], params) in ev(v[0], params)
        if k == "Fn::Not":
            return not ev(v[0], params)
        if k == "Fn::And":
            return all(ev(x, params) for x in v)
        if k == "Fn::Or":
            return any(ev(x, params) for x in v)
        fail(f"rule function {k} not supported by asl_check.py")

    def accepted(params):
        for rule in t.get("Rules", {}).values():
            if "RuleCondition" in rule and not ev(rule["RuleCondition"], params):
                continue
            if not all(ev(a["Assert"], params) for a in rule["Assertions"]):
                return False
        return True

    rc, bc = p["ReservedConcurrency"], p["BackfillMaxConcurrency"]
    for r in range(int(rc["MinValue"]), int(rc["MaxValue"]) + 1):
        for b in range(int(bc["MinValue"]), int(bc["MaxValue"]) + 1):
            ok = accepted({"ReservedConcurrency": r, "BackfillMaxConcurrency": b})
            if ok != (b <= r):
                fail(f"ReservedConcurrency={r}, BackfillMaxConcurrency={b}: the template "
                     f"{'accepts' if ok else 'refuses'} it")
    return int(t["Resources"]["ExtractFunction"]["Properties"]["Timeout"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("asl", nargs="?", default=str(ROOT / "infra" / "backfill.asl.json"))
    ap.add_argument("--template", help="also check the template's concurrency rules and timeout")
    ap.add_argument("--error-classes", default=str(ROOT / "src" / "error_class.rs"))
    ap.add_argument("--emit-template")
    args = ap.parse_args()
    classes, retryable = error_classes(args.error_classes)
    if not RUN_WIDE <= classes:
        fail(f"run-wide classes {sorted(RUN_WIDE - classes)} are not ErrorClasses")
    try:
        asl = json.loads(substitute(Path(args.asl).read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        fail(f"{args.asl} is not valid JSON: {e}")
    function_timeout = check_concurrency_rules(args.template) if args.template else 900

    check_machine(asl, "top level")
    check_names(asl, classes, "backfill")
    states = asl["States"]
    plan = states["PlanDays"]
    if plan["Parameters"]["Payload"].get("action") != "plan_backfill":
        fail("PlanDays must invoke the function with action plan_backfill")
    check_retries(plan, "PlanDays", classes, retryable)
    if states["Configure"]["Parameters"]["max_concurrency.$"] != "States.StringToJson('2')":
        fail("Configure does not substitute MaxConcurrency")

    m = states["ExtractDays"]
    if m["Type"] != "Map" or m["ItemsPath"] != "$.plan.days":
        fail("ExtractDays must map over $.plan.days")
    if "MaxConcurrency" not in m and "MaxConcurrencyPath" not in m:
        fail("ExtractDays has no concurrency limit")
    proc = m["ItemProcessor"]
    check_machine(proc, "ExtractDays")
    day = proc["States"][proc["StartAt"]]
    payload = day["Parameters"]["Payload"]
    if payload.get("source") != "backfill" or "start.$" not in payload or "end.$" not in payload:
        fail("ExtractDay must send {source: backfill, start, end}")
    check_retries(day, "ExtractDay", classes, retryable)
    check_runtime_timeout(day, "ExtractDay", function_timeout)

    # Run-wide errors stop everything; every other error is recorded and the others go on.
    for e in sorted(RUN_WIDE):
        c = first_catcher(day, e)
        if c is None or proc["States"][c["Next"]]["Type"] != "Fail":
            fail(f"ExtractDay: {e} must fail the day's child (and so the Map Run)")
    for e in sorted((classes - RUN_WIDE) | AWS_RETRYABLE | {"States.TaskFailed", "Some.Unknown"}):
        c = first_catcher(day, e)
        if c is None or proc["States"][c["Next"]]["Type"] == "Fail":
            fail(f"ExtractDay: {e} must be recorded as a failed day, not stop the backfill")
    if m.get("ToleratedFailurePercentage", 0) != 0 or m.get("ToleratedFailureCount", 0) != 0 \
            or "ToleratedFailurePercentagePath" in m or "ToleratedFailureCountPath" in m:
        fail("ExtractDays must tolerate no failed child: a failed child is a run-wide error")
    c = first_catcher(m, "States.ExceedToleratedFailureThreshold")
    if c is None or states[c["Next"]]["Type"] != "Fail":
        fail("a failed Map Run must end the execution (Catch to a Fail state)")
    failed = [st for st in proc["States"].values() if st["Type"] == "Pass"
              and st.get("Parameters", {}).get("status") == "failed"]
    if not failed or any("date.$" not in st["Parameters"] for st in failed):
        fail("a failed day must be recorded as {date, status: failed, error}")

    bound = plan_bound(states)
    report = []
    for n, what in ((THREE_YEARS, "three years"), (bound, "the longest plan let through")):
        if n is None:
            fail("no bound on the plan's length (PlanFits): nothing keeps the state under 256 KiB")
        (where, biggest), payloads, parent, child = limits(asl, n)
        report.append(f"{n} days ({what}): largest payload {biggest} B ({where}) of {PAYLOAD_LIMIT}; "
                      f"history {parent} events (execution), {child} (each day) of {HISTORY_LIMIT}")
        if biggest > PAYLOAD_LIMIT:
            fail(f"{n} days: {where} is {biggest} bytes > {PAYLOAD_LIMIT} (States.DataLimitExceeded); {payloads}")
        if parent > HISTORY_LIMIT or child > HISTORY_LIMIT:
            fail(f"{n} days: history of {parent} (execution) / {child} (a day) events > {HISTORY_LIMIT}")
    if bound < THREE_YEARS:
        fail(f"PlanFits lets only {bound} days through: a three-year backfill must fit")

    if args.emit_template:
        tpl = {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
                    "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                    "Principal": {"Service": "states.amazonaws.com"}}]}}},
                "Backfill": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
                    "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]}, "Definition": asl}},
            },
        }
        Path(args.emit_template).write_text(json.dumps(tpl, indent=1), encoding="utf-8")
    for line in report:
        print(f"asl_check: {line}")
    print(f"asl_check: {args.asl} ok ({len(states)} states, {len(proc['States'])} per day)")


if __name__ == "__main__":
    main()

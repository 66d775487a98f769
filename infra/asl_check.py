#!/usr/bin/env python3
"""Structural checks of infra/backfill.asl.json (stdlib only).

Checks what cfn-lint cannot see (the definition is a separate file): it parses, every
`${...}` is a DefinitionSubstitution the template provides, every Next/Default/Catch target
exists, every state is reachable, the Map carries the per-day payload, transient errors are
retried with back-off and permanent ones are not, and failures of a day are caught.
With `--emit-template OUT`, also writes a small CloudFormation template with the substituted
definition inline, so cfn-lint validates it against the Amazon States Language schema.
"""
import argparse
import json
import re
import sys
from pathlib import Path

SUBSTITUTIONS = {"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:gp-extract",
                 "MaxConcurrency": "2"}
TRANSIENT = {"Genesys.Transient", "Store.Transient", "Deadline.Incomplete",
             "Lambda.ServiceException", "Lambda.TooManyRequestsException", "States.Timeout"}
PERMANENT = {"Input.Invalid", "Genesys.Permanent"}


def fail(msg):
    print(f"asl_check: {msg}", file=sys.stderr)
    sys.exit(1)


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


def check_retries(task, name):
    retried, not_retried = set(), set()
    for r in task.get("Retry", []):
        errs = set(r["ErrorEquals"])
        if r.get("MaxAttempts", 3) == 0:
            not_retried |= errs - retried
        else:
            if r.get("BackoffRate", 2.0) < 1.5 or r.get("IntervalSeconds", 1) < 1:
                fail(f"{name}: retrier {sorted(errs)} has no real back-off")
            retried |= errs - not_retried
    if not TRANSIENT <= retried:
        fail(f"{name}: transient errors not retried: {sorted(TRANSIENT - retried)}")
    if not PERMANENT <= not_retried:
        fail(f"{name}: permanent errors must not be retried: {sorted(PERMANENT - not_retried)}")
    if not any("States.ALL" in c["ErrorEquals"] for c in task.get("Catch", [])):
        fail(f"{name}: no catch-all Catch")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("asl", nargs="?", default=str(Path(__file__).with_name("backfill.asl.json")))
    ap.add_argument("--emit-template")
    args = ap.parse_args()
    try:
        asl = json.loads(substitute(Path(args.asl).read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        fail(f"{args.asl} is not valid JSON: {e}")

    check_machine(asl, "top level")
    states = asl["States"]
    expected = {"Configure", "PlanDays", "PlanFailed", "ExtractDays", "Summarise", "AnyDayFailed",
                "SomeDaysFailed", "Done"}
    if set(states) != expected:
        fail(f"states {sorted(states)} != expected {sorted(expected)}")
    plan = states["PlanDays"]
    if plan["Parameters"]["Payload"].get("action") != "plan_backfill":
        fail("PlanDays must invoke the function with action plan_backfill")
    check_retries(plan, "PlanDays")

    m = states["ExtractDays"]
    if m["Type"] != "Map" or m["ItemsPath"] != "$.plan.days":
        fail("ExtractDays must map over $.plan.days")
    if "MaxConcurrency" not in m and "MaxConcurrencyPath" not in m:
        fail("ExtractDays has no concurrency limit")
    proc = m["ItemProcessor"]
    check_machine(proc, "ExtractDays")
    day = proc["States"]["ExtractDay"]
    payload = day["Parameters"]["Payload"]
    if payload.get("source") != "backfill" or "start.$" not in payload or "end.$" not in payload:
        fail("ExtractDay must send {source: backfill, start, end}")
    check_retries(day, "ExtractDay")
    failed = proc["States"]["DayFailed"]["Parameters"]
    if failed.get("status") != "failed" or "date.$" not in failed or "error.$" not in failed:
        fail("DayFailed must record {date, status: failed, error}")
    if states["Configure"]["Parameters"]["max_concurrency.$"] != "States.StringToJson('2')":
        fail("Configure does not substitute MaxConcurrency")

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
    print(f"asl_check: {args.asl} ok ({len(states)} states, {len(proc['States'])} per day)")


if __name__ == "__main__":
    main()

//! The backfill state machine (`infra/backfill.asl.json`) matches on the error classes the code
//! returns (`src/error_class.rs`): every name it uses exists, every class that can pass on a
//! retry is retried and no other, and a run-wide failure (`Run.Fatal`) stops the whole backfill.
//! `infra/asl_check.py` checks the same definition against Step Functions' limits.

use genesys_parquet::error_class::ErrorClass;
use serde_json::Value;

fn definition() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/backfill.asl.json");
    let text = std::fs::read_to_string(path).expect("read infra/backfill.asl.json");
    serde_json::from_str(&text).expect("infra/backfill.asl.json is JSON")
}

fn states(machine: &Value) -> &serde_json::Map<String, Value> {
    machine["States"].as_object().expect("States")
}

fn processor(asl: &Value) -> &Value {
    &asl["States"]["ExtractDays"]["ItemProcessor"]
}

fn names(rule: &Value) -> Vec<&str> {
    rule["ErrorEquals"]
        .as_array()
        .expect("ErrorEquals")
        .iter()
        .map(|e| e.as_str().expect("error name"))
        .collect()
}

/// The rule of `kind` ("Retry" or "Catch") that Step Functions applies to `error`: the first
/// whose ErrorEquals names it or `States.ALL`.
fn first<'a>(task: &'a Value, kind: &str, error: &str) -> Option<&'a Value> {
    task[kind]
        .as_array()?
        .iter()
        .find(|r| names(r).iter().any(|n| *n == error || *n == "States.ALL"))
}

fn retried(task: &Value, error: &str) -> bool {
    first(task, "Retry", error).is_some_and(|r| r["MaxAttempts"].as_u64().unwrap_or(3) > 0)
}

fn every_rule(machine: &Value, out: &mut Vec<(String, String)>) {
    for (name, st) in states(machine) {
        for kind in ["Retry", "Catch"] {
            for rule in st[kind].as_array().into_iter().flatten() {
                for n in names(rule) {
                    out.push((name.clone(), n.to_string()));
                }
            }
        }
        if st.get("ItemProcessor").is_some() {
            every_rule(&st["ItemProcessor"], out);
        }
    }
}

#[test]
fn every_error_name_is_an_error_class_or_aws_own() {
    let asl = definition();
    let mut rules = Vec::new();
    every_rule(&asl, &mut rules);
    assert!(rules.len() > 20, "too few rules found: {rules:?}");
    for (state, name) in rules {
        let aws = ["States.", "Lambda.", "Sandbox."]
            .iter()
            .any(|p| name.starts_with(p));
        assert!(
            aws || ErrorClass::parse(&name).is_some(),
            "state {state} names {name:?}: neither an ErrorClass nor an AWS error"
        );
    }
}

#[test]
fn retryable_classes_are_retried_and_only_they() {
    let asl = definition();
    let tasks = [
        ("PlanDays", &asl["States"]["PlanDays"]),
        ("ExtractDay", &processor(&asl)["States"]["ExtractDay"]),
    ];
    for (name, task) in tasks {
        for class in ErrorClass::ALL {
            assert_eq!(
                retried(task, class.as_str()),
                class.is_retryable(),
                "{name}: {class} retried must equal is_retryable()"
            );
        }
        // The runtime killing an invocation can pass on a retry too.
        for aws in ["Sandbox.Timedout", "Lambda.Unknown", "States.Timeout"] {
            assert!(retried(task, aws), "{name}: {aws} is not retried");
        }
    }
}

#[test]
fn run_fatal_stops_the_backfill() {
    let asl = definition();
    let map = &asl["States"]["ExtractDays"];
    let proc = processor(&asl);
    let day = &proc["States"]["ExtractDay"];
    let fatal = ErrorClass::RunFatal.as_str();

    assert!(!retried(day, fatal), "Run.Fatal must not be retried");
    let catch = first(day, "Catch", fatal).expect("Run.Fatal is caught");
    let target = &proc["States"][catch["Next"].as_str().expect("Next")];
    assert_eq!(
        target["Type"], "Fail",
        "Run.Fatal must fail the day's child execution, not be recorded"
    );
    // A failed child fails the Map Run at once (which stops the days still running)...
    assert_eq!(proc["ProcessorConfig"]["Mode"], "DISTRIBUTED");
    assert_eq!(
        map["ToleratedFailurePercentage"].as_f64().unwrap_or(0.0),
        0.0
    );
    assert_eq!(map["ToleratedFailureCount"].as_u64().unwrap_or(0), 0);
    // ...and the failed Map Run ends the execution.
    let catch = first(map, "Catch", "States.ExceedToleratedFailureThreshold")
        .expect("the Map's failure is caught");
    let end = &asl["States"][catch["Next"].as_str().expect("Next")];
    assert_eq!(end["Type"], "Fail");
    assert_eq!(end["Error"], fatal);

    // Any other class of a day is recorded, and the other days go on.
    for class in ErrorClass::ALL {
        if matches!(
            class,
            ErrorClass::RunFatal | ErrorClass::ConfigInvalid | ErrorClass::StorePermanent
        ) {
            // Run-wide too: the configuration, or the one bucket every day writes to
            // (a store refusing access keeps Store.Permanent).
            let catch = first(day, "Catch", class.as_str()).expect("caught");
            let target = &proc["States"][catch["Next"].as_str().expect("Next")];
            assert_eq!(target["Type"], "Fail", "{class} must stop the backfill");
            continue;
        }
        let catch = first(day, "Catch", class.as_str()).expect("caught");
        let target = &proc["States"][catch["Next"].as_str().expect("Next")];
        assert_eq!(
            target["Type"], "Pass",
            "{class} must be recorded as a failed day"
        );
        assert_eq!(target["Parameters"]["status"], "failed");
    }
}

//! The error classes other systems match on: the Lambda's `errorType`, which the Step Functions
//! state machine's `Retry` and `Catch` rules name (`infra/backfill.asl.json`), and the
//! `error_type` of a day in the run summary.
//!
//! Defined once here; a test checks the state machine names only these (plus AWS's own
//! `States.*`, `Lambda.*` and `Sandbox.*` classes) and retries exactly the retryable ones.

use std::fmt;

/// A stable class of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The event or the arguments cannot be right; retrying the same input cannot help.
    InputInvalid,
    /// The deployment's configuration (environment, secret) is wrong.
    ConfigInvalid,
    /// The Genesys API throttled or failed; a later attempt may succeed.
    GenesysTransient,
    /// The Genesys API refused the request for good (a 400 on our query, a 404).
    GenesysPermanent,
    /// The store throttled or failed, or another live run holds the partition.
    StoreTransient,
    /// The store refused for good.
    StorePermanent,
    /// A page could not be converted.
    ConvertFailed,
    /// The invocation stopped before its deadline; nothing visible changed; run it again.
    DeadlineIncomplete,
    /// A failure that cannot depend on the day (login refused, host unreachable, store access
    /// denied): every other day would fail the same way, so a backfill stops at once.
    RunFatal,
    /// A bug.
    Internal,
}

impl ErrorClass {
    /// Every class, for checks.
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::InputInvalid,
        ErrorClass::ConfigInvalid,
        ErrorClass::GenesysTransient,
        ErrorClass::GenesysPermanent,
        ErrorClass::StoreTransient,
        ErrorClass::StorePermanent,
        ErrorClass::ConvertFailed,
        ErrorClass::DeadlineIncomplete,
        ErrorClass::RunFatal,
        ErrorClass::Internal,
    ];

    /// The name Step Functions matches on.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InputInvalid => "Input.Invalid",
            ErrorClass::ConfigInvalid => "Config.Invalid",
            ErrorClass::GenesysTransient => "Genesys.Transient",
            ErrorClass::GenesysPermanent => "Genesys.Permanent",
            ErrorClass::StoreTransient => "Store.Transient",
            ErrorClass::StorePermanent => "Store.Permanent",
            ErrorClass::ConvertFailed => "Convert.Failed",
            ErrorClass::DeadlineIncomplete => "Deadline.Incomplete",
            ErrorClass::RunFatal => "Run.Fatal",
            ErrorClass::Internal => "Internal",
        }
    }

    /// Worth retrying as is.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::GenesysTransient
                | ErrorClass::StoreTransient
                | ErrorClass::DeadlineIncomplete
        )
    }

    /// Looks a name up.
    pub fn parse(name: &str) -> Option<ErrorClass> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut names: Vec<_> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorClass::ALL.len());
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorClass::parse("Genesys.Transient "), None);
    }
}

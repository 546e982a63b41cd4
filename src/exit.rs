//! Exit codes, in one place. Documented in README.md and docs/.

/// The hypothesis held: steady before, during (where required) and after.
pub const HELD: i32 = 0;
/// The hypothesis deviated: a probe missed its requirement during or after.
pub const DEVIATED: i32 = 1;
/// An abort condition stopped the method; everything was rolled back.
pub const ABORTED: i32 = 2;
/// The steady state did not hold before injection; nothing was injected.
pub const NOT_STEADY: i32 = 3;
/// A rollback failed: faults may remain on the host (`faultline recover`).
pub const ROLLBACK_FAILED: i32 = 4;
/// INCONCLUSIVE: the experiment did not test what it said (a fault missing or
/// under-delivered, a setup process died, too few samples), so it cannot be HELD.
pub const INCONCLUSIVE: i32 = 5;
/// The experiment file or the command line is invalid (EX_USAGE / EX_DATAERR).
pub const INVALID: i32 = 64;
/// A precondition is missing: a tool, a kernel feature, a target (EX_UNAVAILABLE).
/// Also `recover` on a run whose runner is alive (busy, not a failed rollback).
pub const PRECONDITION: i32 = 69;
/// Not enough privileges (EX_NOPERM), or a state directory or file others
/// could write (see docs/safety.md).
pub const PRIVILEGES: i32 = 77;
/// An internal error (a bug in faultline); pending faults were rolled back first.
pub const INTERNAL: i32 = 70;
/// Interrupted by a signal; everything was rolled back first.
pub const INTERRUPTED: i32 = 130;

/// One line on what an exit code means, for the verdict line and `--help`.
pub fn meaning(code: i32) -> &'static str {
    match code {
        HELD => "hypothesis held",
        DEVIATED => "hypothesis deviated",
        ABORTED => "aborted by an abort condition (rolled back)",
        NOT_STEADY => "steady state not met before injection (nothing injected)",
        ROLLBACK_FAILED => "rollback failed: faults may remain (run `faultline recover`)",
        INCONCLUSIVE => "the experiment did not test what it said, so it cannot be held",
        INVALID => "invalid experiment or usage",
        PRECONDITION => "a precondition is missing",
        PRIVILEGES => "insufficient privileges",
        INTERRUPTED => "interrupted (rolled back)",
        INTERNAL => "internal error (rolled back); please report it",
        c if c > 128 => "terminated by a signal (rolled back)",
        _ => "error",
    }
}

/// An error that carries the exit code it should end the process with.
#[derive(Debug)]
pub struct ExitError {
    pub code: i32,
    pub message: String,
}

impl ExitError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        ExitError {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(INVALID, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(PRECONDITION, message)
    }
    pub fn privileges(message: impl Into<String>) -> Self {
        Self::new(PRIVILEGES, message)
    }
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

/// The exit code for any error: an `ExitError` anywhere in the chain decides,
/// anything else is a precondition failure (the host did not let us proceed).
pub fn code_of(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ExitError>() {
            return e.code;
        }
    }
    PRECONDITION
}

/// How bad an outcome is, for the exit code of `faultline run` with several
/// experiments (the worst wins). Higher is worse:
///
/// 1. 4 rollback failed: faults may remain on the host, act first;
/// 2. 70 internal error, and any code not listed here;
/// 3. 130 interrupted, and any other signal (129, 143, ...);
/// 4. 2 aborted, 1 deviated: findings about the system, the abort first;
/// 5. 5 inconclusive, 3 steady state not met: the experiment did not test
///    what it said;
/// 6. 77 privileges, 69 precondition, 64 invalid: it could not start;
/// 7. 0 held.
///
/// Documented in docs/ci.md; keep the two in step.
pub fn severity(code: i32) -> u8 {
    match code {
        HELD => 0,
        INVALID => 1,
        PRECONDITION => 2,
        PRIVILEGES => 3,
        NOT_STEADY => 4,
        INCONCLUSIVE => 5,
        DEVIATED => 6,
        ABORTED => 7,
        c if c > 128 => 8,
        ROLLBACK_FAILED => 10,
        _ => 9,
    }
}

/// The worse of two exit codes by [`severity`] (the first on a tie).
pub fn worst(a: i32, b: i32) -> i32 {
    if severity(b) > severity(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_code_follows_the_documented_order() {
        let order = [
            HELD,
            INVALID,
            PRECONDITION,
            PRIVILEGES,
            NOT_STEADY,
            INCONCLUSIVE,
            DEVIATED,
            ABORTED,
            INTERRUPTED,
            INTERNAL,
            ROLLBACK_FAILED,
        ];
        for w in order.windows(2) {
            assert!(severity(w[0]) < severity(w[1]), "{} before {}", w[0], w[1]);
            assert_eq!(worst(w[0], w[1]), w[1]);
            assert_eq!(worst(w[1], w[0]), w[1]);
        }
        assert_eq!(severity(143), severity(INTERRUPTED));
        assert_eq!(worst(HELD, HELD), HELD);
        assert_eq!(
            order.iter().copied().fold(HELD, worst),
            ROLLBACK_FAILED,
            "a failed rollback outranks everything"
        );
    }
}

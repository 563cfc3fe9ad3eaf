//! Named points at which the runner can be made to die by SIGKILL, for fault tests: with
//! `RUNNER_KILL_AT=<point>` in its environment the process kills itself when it first
//! reaches that point, exactly as an operator's `kill -9` or a power cut would stop it
//! there. Unset (always, in production), each point costs one comparison.
//!
//! Points: `request_before_commit` (a receipt built, not yet stored), `request_after_commit`
//! (stored, the response not sent), `settle_after_broadcast` (a `settle` transaction handed
//! to the node, its outcome not read), `settle_after_outcome` (a `settle` outcome known, not
//! yet recorded).

use std::sync::OnceLock;

fn target() -> Option<&'static str> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var("RUNNER_KILL_AT").ok())
        .as_deref()
}

/// The point named in `RUNNER_KILL_AT`, if any: `serve` warns of it at start.
pub fn armed() -> Option<&'static str> {
    target()
}

/// Dies here by SIGKILL if this is the point named in `RUNNER_KILL_AT`.
pub fn reached(point: &str) {
    if target() == Some(point) {
        // A real SIGKILL, not an exit or a panic: nothing after this line runs, no
        // destructor, no flush.
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        // No `kill` to run: die anyway, just as abruptly.
        std::process::abort();
    }
}

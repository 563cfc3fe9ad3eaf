//! What the suite's programs show people, written once: progress bars on stderr
//! ([`progress`]) and the section of `docs/benchmarks.md` each benchmark owns ([`bench`]).

pub mod bench;
pub mod progress;

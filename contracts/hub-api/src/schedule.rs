//! Changes and waits fixed in time when they are asked for: a scheduled change of terms and
//! a deadline. Both move later by any time the hub was paused since (when nobody could act).

use near_sdk::{json_types::U64, near};

use crate::pause::Pauses;

/// A change to terms that could reduce what someone already earned: it applies from
/// `effective_at_ns`, fixed when it was scheduled (now + the hub's notice), never earlier,
/// and later by any time the hub was paused since (when nobody could act on the notice).
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled<T> {
    pub terms: T,
    pub scheduled_at_ns: U64,
    pub effective_at_ns: U64,
}

impl<T: Clone> Scheduled<T> {
    /// `current`, or the scheduled terms once they are in effect at `now_ns`.
    pub fn at<'a>(
        pending: Option<&'a Self>,
        current: &'a T,
        now_ns: u64,
        pauses: &Pauses,
    ) -> &'a T {
        match pending {
            Some(p) if p.in_effect(now_ns, pauses) => &p.terms,
            _ => current,
        }
    }

    pub fn in_effect(&self, now_ns: u64, pauses: &Pauses) -> bool {
        now_ns >= pauses.extended(self.effective_at_ns.0, self.scheduled_at_ns.0, now_ns)
    }
}

/// A waiting period fixed when it was requested: a later change of the hub's delays does
/// not move it; a pause of the hub extends it by the paused time since `requested_at_ns`.
#[near(serializers = [borsh, json])]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub requested_at_ns: U64,
    pub ready_at_ns: U64,
}

//! The owner's pause, bounded: it lasts at most `MAX_PAUSE_NS`, a new one needs
//! `PAUSE_COOLDOWN_NS` since the last one ended (so the owner can never hold the hub
//! stopped for good), and it stops the clocks: every deadline that could cost someone
//! money while nobody can act (a withdrawal's or an exit's ready time, an authorization's
//! expiry) moves later by the paused time.

use near_sdk::near;

/// The longest a pause lasts; after it the hub runs again by itself.
pub const MAX_PAUSE_NS: u64 = 3 * DAY_NS;
/// The least time between the end of one pause and the start of the next.
pub const PAUSE_COOLDOWN_NS: u64 = MAX_PAUSE_NS;
/// Pauses remembered for the clocks. Deadlines only look back over their own lifetimes
/// (at most the hub's longest delay or an authorization's life), and pauses are at least
/// `PAUSE_COOLDOWN_NS` apart, so the oldest ones forgotten only shorten extensions of
/// deadlines older than 16 × 6 days.
pub const PAUSES_KEPT: usize = 16;
const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// Pause periods as `[start, end)` in block time, oldest first; the last one may still run.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pauses {
    periods: Vec<(u64, u64)>,
}

impl Pauses {
    pub const EMPTY: Self = Self {
        periods: Vec::new(),
    };

    pub fn is_paused(&self, now_ns: u64) -> bool {
        self.periods
            .last()
            .is_some_and(|&(start, end)| start <= now_ns && now_ns < end)
    }

    /// When the current pause ends by itself, if the hub is paused.
    pub fn paused_until(&self, now_ns: u64) -> Option<u64> {
        self.is_paused(now_ns)
            .then(|| self.periods.last().map(|p| p.1))
            .flatten()
    }

    /// Starts a pause at `now_ns`, or says why not.
    pub fn pause(&mut self, now_ns: u64) -> Result<u64, String> {
        if let Some(&(_, end)) = self.periods.last() {
            if now_ns < end {
                return Err("the hub is already paused".into());
            }
            let next = end.saturating_add(PAUSE_COOLDOWN_NS);
            if now_ns < next {
                return Err(format!(
                    "a new pause is possible from {next} ns (the last one ended at {end} ns), it is {now_ns} ns"
                ));
            }
        }
        if self.periods.len() == PAUSES_KEPT {
            self.periods.remove(0);
        }
        let end = now_ns.saturating_add(MAX_PAUSE_NS);
        self.periods.push((now_ns, end));
        Ok(end)
    }

    /// Ends the current pause at `now_ns`.
    pub fn unpause(&mut self, now_ns: u64) -> Result<(), String> {
        match self.periods.last_mut() {
            Some(p) if p.0 <= now_ns && now_ns < p.1 => {
                p.1 = now_ns;
                Ok(())
            }
            _ => Err("the hub is not paused".into()),
        }
    }

    /// Paused time within `[from_ns, now_ns)`.
    pub fn paused_between(&self, from_ns: u64, now_ns: u64) -> u64 {
        self.periods
            .iter()
            .map(|&(start, end)| {
                let (a, b) = (start.max(from_ns), end.min(now_ns));
                b.saturating_sub(a)
            })
            .sum()
    }

    /// `deadline_ns` moved later by the paused time since `since_ns` (until `now_ns`).
    pub fn extended(&self, deadline_ns: u64, since_ns: u64, now_ns: u64) -> u64 {
        deadline_ns.saturating_add(self.paused_between(since_ns, now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_end_by_themselves_and_stop_the_clocks() {
        let mut p = Pauses::default();
        assert!(!p.is_paused(10));
        let end = p.pause(100).unwrap();
        assert_eq!(end, 100 + MAX_PAUSE_NS);
        assert!(p.is_paused(100) && p.is_paused(end - 1) && !p.is_paused(end));
        assert_eq!(p.paused_until(200), Some(end));
        // A deadline at 150 requested at 50: by 160, 60 ns of pause have passed.
        assert_eq!(p.extended(150, 50, 160), 210);
        // No new pause until the cooldown since the last one's end.
        assert!(p.pause(end).unwrap_err().contains("possible from"));
        p.pause(end + PAUSE_COOLDOWN_NS).unwrap();
        p.unpause(end + PAUSE_COOLDOWN_NS + 5).unwrap();
        assert!(p.unpause(end + PAUSE_COOLDOWN_NS + 6).is_err());
        assert_eq!(p.paused_between(0, u64::MAX), MAX_PAUSE_NS + 5);
    }

    #[test]
    fn only_the_last_pauses_are_kept() {
        let mut p = Pauses::default();
        let mut t = 0u64;
        for _ in 0..PAUSES_KEPT + 3 {
            p.pause(t).unwrap();
            p.unpause(t + 1).unwrap();
            t += PAUSE_COOLDOWN_NS + 2;
        }
        assert_eq!(p.periods.len(), PAUSES_KEPT);
        assert_eq!(p.paused_between(0, t), PAUSES_KEPT as u64);
    }
}

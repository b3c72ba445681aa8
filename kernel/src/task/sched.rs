//! Choosing the next task: strict priority (0 is highest), round robin within a priority.
//!
//! Owns: the pick rule only; task states live with the tasks. Invariant: a runnable task of a
//! higher priority always runs before a lower one; among equals, the one that ran least recently
//! goes first, so a yield or a timer tick lets each peer of the same priority run in turn.

/// What the scheduler needs to know about a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub runnable: bool,
    pub priority: u8,
    /// When the task was last switched away from (a counter, larger is more recent).
    pub last_ran: u64,
}

/// The index of the task to run next, or `None` when nothing is runnable.
pub fn pick(tasks: &[Candidate]) -> Option<usize> {
    tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.runnable)
        .min_by_key(|(i, t)| (t.priority, t.last_ran, *i))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(runnable: bool, priority: u8, last_ran: u64) -> Candidate {
        Candidate {
            runnable,
            priority,
            last_ran,
        }
    }

    #[test]
    fn highest_priority_wins_then_least_recent() {
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[c(false, 0, 0)]), None);
        assert_eq!(
            pick(&[c(true, 2, 0), c(true, 1, 9), c(true, 1, 3)]),
            Some(2)
        );
        assert_eq!(pick(&[c(true, 0, 100), c(true, 1, 0)]), Some(0));
    }

    #[test]
    fn round_robin_among_equals() {
        let mut t = [c(true, 1, 0), c(true, 1, 0), c(true, 1, 0)];
        let mut order = Vec::new();
        for now in 1..=6 {
            let i = pick(&t).unwrap();
            order.push(i);
            t[i].last_ran = now;
        }
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    }
}

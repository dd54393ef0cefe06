//! A Wing–Gong–Lowe search for one annotation key, modelled as a versioned compare-and-set
//! register: a read returns `(version, marker)`; a save from version `v` sets `(v + 1, marker)`
//! when the version is `v` and fails (412) otherwise. Operations that may or may not have taken
//! effect (`Info`) are open-ended: they may be linearised anywhere after their call, or never.

use std::collections::{BTreeSet, HashSet};

/// The register's state: its version and which save wrote it (an index into the markers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub version: u64,
    pub writer: Option<u32>,
}

#[derive(Clone, Debug)]
pub enum Call {
    Read(State),
    /// A save from `if_match` writing `writer`.
    Save {
        if_match: u64,
        writer: u32,
        applied: Option<bool>,
    },
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub call_us: u64,
    /// `u64::MAX` for an indeterminate operation.
    pub ret_us: u64,
    pub call: Call,
    /// Required to be linearised (it completed); indeterminate saves are not.
    pub required: bool,
    /// The operation's id, for the report.
    pub op: u64,
}

/// What the search found: `Ok` or the operation no order could place.
pub enum Verdict {
    Linearizable,
    /// No linearisation; `stuck_at` is the first required operation left over on the deepest
    /// path the search found.
    Violation {
        stuck_at: u64,
        deepest: usize,
    },
    /// Gave up after `budget` steps: reported, not counted as a violation.
    Unknown,
}

/// Applies `call` to `state`: the new state if the operation may take effect there.
fn step(state: State, call: &Call) -> Option<State> {
    match call {
        Call::Read(seen) => (*seen == state).then_some(state),
        Call::Save {
            if_match,
            writer,
            applied,
        } => match applied {
            Some(true) => (state.version == *if_match).then_some(State {
                version: if_match + 1,
                writer: Some(*writer),
            }),
            Some(false) => (state.version != *if_match).then_some(state),
            None => (state.version == *if_match).then_some(State {
                version: if_match + 1,
                writer: Some(*writer),
            }),
        },
    }
}

/// Checks `entries` (any order) from the empty register.
pub fn check(mut entries: Vec<Entry>, budget: u64) -> Verdict {
    entries.sort_by_key(|e| e.call_us);
    let n = entries.len();
    let words = n.div_ceil(64);
    let required = entries.iter().filter(|e| e.required).count();
    let mut done = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    // The stack of linearised operations with the state before each.
    let mut stack: Vec<(usize, State, usize)> = Vec::new();
    let mut state = State {
        version: 0,
        writer: None,
    };
    let mut done_required = 0;
    let mut deepest = (0usize, Vec::new());
    let mut next_candidate = 0usize;
    let mut steps = 0u64;
    // `(return time, index)` of every operation not linearised yet.
    let mut open: BTreeSet<(u64, usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.ret_us, i))
        .collect();
    let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    loop {
        steps += 1;
        if steps > budget {
            return Verdict::Unknown;
        }
        if done_required == required {
            return Verdict::Linearizable;
        }
        // Operations that may go next: not done, called before the earliest return among
        // those not done.
        let earliest_ret = open.first().map_or(u64::MAX, |(ret, _)| *ret);
        let mut advanced = false;
        let mut i = next_candidate;
        while i < n && entries[i].call_us <= earliest_ret {
            if !is_done(&done, i) {
                let e = &entries[i];
                // An open save from a version already passed can never apply: dropping it
                // is the only choice, made once, so the memo sees one shape of that history.
                let forced = matches!(e.call, Call::Save { if_match, applied: None, .. } if state.version > if_match);
                let next = if forced {
                    Some(state)
                } else {
                    step(state, &e.call)
                };
                if let Some(next) = next {
                    let mut marked = done.clone();
                    marked[i / 64] |= 1 << (i % 64);
                    if seen.insert((marked.clone(), next)) {
                        stack.push((i, state, i + 1));
                        open.remove(&(e.ret_us, i));
                        done = marked;
                        state = next;
                        if e.required {
                            done_required += 1;
                        }
                        if stack.len() > deepest.0 {
                            deepest = (stack.len(), done.clone());
                        }
                        next_candidate = 0;
                        advanced = true;
                        break;
                    }
                }
            }
            i += 1;
        }
        if advanced {
            continue;
        }
        // Backtrack: undo the last choice and try the next candidate after it.
        let Some((last, before, resume)) = stack.pop() else {
            let stuck_at = (0..n)
                .find(|&i| entries[i].required && !is_done(&deepest.1, i))
                .map(|i| entries[i].op)
                .unwrap_or(0);
            return Verdict::Violation {
                stuck_at,
                deepest: deepest.0,
            };
        };
        done[last / 64] &= !(1 << (last % 64));
        open.insert((entries[last].ret_us, last));
        if entries[last].required {
            done_required -= 1;
        }
        state = before;
        next_candidate = resume;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(call: u64, ret: u64, version: u64, writer: Option<u32>) -> Entry {
        Entry {
            call_us: call,
            ret_us: ret,
            call: Call::Read(State { version, writer }),
            required: true,
            op: call,
        }
    }

    fn save(call: u64, ret: u64, if_match: u64, writer: u32, applied: Option<bool>) -> Entry {
        Entry {
            call_us: call,
            ret_us: if applied.is_none() { u64::MAX } else { ret },
            call: Call::Save {
                if_match,
                writer,
                applied,
            },
            required: applied.is_some(),
            op: call,
        }
    }

    #[test]
    fn concurrent_saves_from_one_version_linearise_with_one_winner() {
        let history = vec![
            save(0, 10, 0, 1, Some(true)),
            save(1, 11, 0, 2, Some(false)),
            read(12, 13, 1, Some(1)),
        ];
        assert!(matches!(check(history, 100_000), Verdict::Linearizable));
    }

    #[test]
    fn two_winners_from_one_version_are_a_violation() {
        let history = vec![save(0, 10, 0, 1, Some(true)), save(1, 11, 0, 2, Some(true))];
        assert!(matches!(check(history, 100_000), Verdict::Violation { .. }));
    }

    #[test]
    fn a_stale_read_after_a_completed_save_is_a_violation() {
        let history = vec![save(0, 10, 0, 1, Some(true)), read(20, 30, 0, None)];
        assert!(matches!(
            check(history, 100_000),
            Verdict::Violation { stuck_at: 20, .. }
        ));
    }

    #[test]
    fn an_indeterminate_save_may_have_applied_or_not() {
        let applied = vec![save(0, 0, 0, 1, None), read(50, 60, 1, Some(1))];
        assert!(matches!(check(applied, 100_000), Verdict::Linearizable));
        let not_applied = vec![
            save(0, 0, 0, 1, None),
            read(50, 60, 0, None),
            save(70, 80, 0, 2, Some(true)),
        ];
        assert!(matches!(check(not_applied, 100_000), Verdict::Linearizable));
        let flickers = vec![
            save(0, 0, 0, 1, None),
            read(50, 60, 1, Some(1)),
            read(70, 80, 0, None),
        ];
        assert!(matches!(
            check(flickers, 100_000),
            Verdict::Violation { .. }
        ));
    }
}

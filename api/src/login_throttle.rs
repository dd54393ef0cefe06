//! Exponential back-off on failed sign-ins, per user name and per client address, so the
//! password grant cannot be brute-forced at the speed of argon2.
//!
//! Every attempt is counted as a failure *when it is admitted*, before the password is checked,
//! and given back when the password was right: a burst of parallel guesses therefore gets no
//! more tries than sequential ones. Past the free attempts, each failure doubles the wait
//! (1 s, 2 s, 4 s … up to 5 minutes); attempts during a wait are refused without being checked
//! or counted, so they cost no argon2 time and do not extend the wait. Failures are forgotten
//! after 15 quiet minutes.
//!
//! Names are throttled whether or not the user exists (the answer must not tell), so an attacker
//! can slow down someone's sign-ins; tokens already issued keep working, and the cap bounds it.
//! Addresses get more free attempts than names (many people may share one NAT); IPv6 addresses
//! count per /64, which one client usually has whole. The state is per node: an attacker who
//! spreads guesses over N nodes gets N times the rate (docs/reliability.md).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How one key (a name or an address) is throttled.
struct Policy {
    /// Failures allowed before the first wait.
    free: u32,
    /// The first wait; each failure after it doubles.
    base: Duration,
    /// The longest wait.
    max: Duration,
}

const PER_USER: Policy = Policy {
    free: 5,
    base: Duration::from_secs(1),
    max: Duration::from_secs(300),
};

const PER_ADDRESS: Policy = Policy {
    free: 20,
    base: Duration::from_secs(1),
    max: Duration::from_secs(300),
};

/// Failures older than this, with no wait running, are forgotten.
const FORGET: Duration = Duration::from_secs(15 * 60);

/// Keys kept per table; beyond it, forgotten keys go first, then the least recent ones (the
/// tables cannot be grown without bound by guessing with many names).
const MAX_KEYS: usize = 100_000;

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Option<Instant>,
    last: Instant,
}

impl Entry {
    fn wait(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn forgotten(&self, now: Instant) -> bool {
        self.wait(now).is_none() && now.duration_since(self.last) > FORGET
    }
}

struct Table {
    policy: Policy,
    entries: HashMap<String, Entry>,
}

impl Table {
    fn new(policy: Policy) -> Table {
        Table {
            policy,
            entries: HashMap::new(),
        }
    }

    fn wait(&self, key: &str, now: Instant) -> Option<Duration> {
        self.entries.get(key).and_then(|e| e.wait(now))
    }

    /// Counts a failure of `key`; returns whether a wait started that was not running before.
    fn fail(&mut self, key: &str, now: Instant) -> bool {
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_KEYS {
            self.make_room(now);
        }
        let entry = self.entries.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            blocked_until: None,
            last: now,
        });
        if entry.forgotten(now) {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        let Some(over) = entry.failures.checked_sub(self.policy.free) else {
            return false;
        };
        let wait = self
            .policy
            .base
            .saturating_mul(1u32 << over.min(20))
            .min(self.policy.max);
        entry.blocked_until = Some(now + wait);
        over == 0
    }

    /// Gives back the failure an admitted attempt was charged.
    fn refund(&mut self, key: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
        }
    }

    fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, e| !e.forgotten(now));
        if self.entries.len() < MAX_KEYS {
            return;
        }
        let mut by_age: Vec<(Instant, String)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.last, k.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, key) in by_age.into_iter().take(MAX_KEYS / 8) {
            self.entries.remove(&key);
        }
    }
}

/// The throttle of one node's password checks.
pub struct LoginThrottle {
    users: Mutex<Table>,
    addresses: Mutex<Table>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            users: Mutex::new(Table::new(PER_USER)),
            addresses: Mutex::new(Table::new(PER_ADDRESS)),
        }
    }
}

/// The throttling key of a client address: IPv4 whole, IPv6 by its /64.
fn address_key(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => address.to_string(),
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

impl LoginThrottle {
    /// Admits a password attempt for `user` from `address` (charging it as a failure until
    /// [`LoginThrottle::succeeded`]), or says how long the caller must wait.
    pub fn admit(&self, user: &str, address: &str, now: Instant) -> Result<(), Duration> {
        let address = address_key(address);
        let mut users = lock(&self.users);
        let mut addresses = lock(&self.addresses);
        let wait = users.wait(user, now).max(addresses.wait(&address, now));
        if let Some(wait) = wait {
            return Err(wait);
        }
        if users.fail(user, now) {
            tracing::warn!(target: "tessera::audit", user, "repeated failed sign-ins: this name is throttled");
        }
        if addresses.fail(&address, now) {
            tracing::warn!(target: "tessera::audit", address, "repeated failed sign-ins: this address is throttled");
        }
        Ok(())
    }

    /// The password was right: the name's failures are forgotten, and the address gets back
    /// what this attempt was charged.
    pub fn succeeded(&self, user: &str, address: &str) {
        lock(&self.users).forget(user);
        lock(&self.addresses).refund(&address_key(address));
    }
}

/// Whole seconds to wait, rounded up (what `Retry-After` says).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The 429 for a password check refused while its name or address waits (routes other than
/// the token endpoint, which answers in OAuth's shape).
pub fn refusal(wait: Duration) -> axum::response::Response {
    use axum::response::IntoResponse;
    metrics::counter!("tessera_login_throttled_total").increment(1);
    let seconds = retry_after_secs(wait);
    let mut response = crate::error::ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!(
            "too many wrong passwords for this user or from this address; try again in {seconds} s"
        ),
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(seconds),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_attempts_and_a_success_clears_the_name() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..PER_USER.free {
            throttle.admit("mia", "10.0.0.1", t0).unwrap();
        }
        assert_eq!(
            throttle.admit("mia", "10.0.0.1", t0),
            Err(Duration::from_secs(1))
        );
        // Another name from the same address is not affected by mia's wait.
        throttle.admit("ben", "10.0.0.1", t0).unwrap();
        let t1 = t0 + Duration::from_secs(1);
        throttle.admit("mia", "10.0.0.2", t1).unwrap();
        assert_eq!(
            throttle.admit("mia", "10.0.0.2", t1),
            Err(Duration::from_secs(2))
        );
        let t2 = t1 + Duration::from_secs(2);
        throttle.admit("mia", "10.0.0.2", t2).unwrap();
        throttle.succeeded("mia", "10.0.0.2");
        throttle.admit("mia", "10.0.0.2", t2).unwrap();
        // Forgotten after a quiet while.
        let later = t2 + FORGET + Duration::from_secs(1);
        for _ in 0..PER_USER.free {
            throttle.admit("ben", "10.0.0.3", later).unwrap();
        }
    }

    #[test]
    fn an_address_is_throttled_across_names_and_ipv6_by_its_64() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for i in 0..PER_ADDRESS.free {
            throttle
                .admit(&format!("guess-{i}"), &format!("2001:db8::{i:x}"), t0)
                .unwrap();
        }
        assert!(throttle.admit("mia", "2001:db8::ffff", t0).is_err());
        throttle.admit("mia", "2001:db9::1", t0).unwrap();
        assert_eq!(address_key("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn waits_are_capped_and_tables_bounded() {
        let mut table = Table::new(PER_USER);
        let mut now = Instant::now();
        for _ in 0..100 {
            table.fail("x", now);
            now += Duration::from_secs(600);
        }
        assert_eq!(
            table.wait("x", now - Duration::from_secs(600)),
            Some(PER_USER.max)
        );
        for i in 0..MAX_KEYS + 10 {
            table.fail(&i.to_string(), now);
        }
        assert!(table.entries.len() <= MAX_KEYS);
    }
}

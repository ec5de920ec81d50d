//! Offer filters on one agent: "do not offer this framework, in this role, these resources
//! (or fewer) until T" (Mesos `Filters.refuse_seconds` on DECLINE and ACCEPT).
//!
//! Filters are keyed by *client*: one framework subscribed to one role, numbered densely by
//! the allocator. Besides the exact check, the agent keeps one bit per client saying "a live
//! filter refuses everything this agent has free right now", computed for one value of the
//! agent's free resources. A framework's decline hands back exactly what was free, so the
//! bits stay valid across the offer-decline cycle and the allocator's scan over 200
//! frameworks on 50,000 agents is a bit test per framework instead of a resource comparison.
use std::time::Instant;

use crate::resources::Resources;

#[derive(Debug)]
struct OfferFilter {
    until: Instant,
    refused: Resources,
}

#[derive(Debug, Default)]
pub(crate) struct OfferFilters {
    /// Client of each filter, sorted (at most one filter per client).
    clients: Vec<u32>,
    /// The filters, in the same order as `clients`.
    list: Vec<OfferFilter>,
    earliest: Option<Instant>,
    /// The free resources `refusing` was computed for; `None` when it must be recomputed.
    cached_for: Option<Resources>,
    /// Bit per client: its live filter holds all of `cached_for`.
    refusing: Vec<u64>,
}

impl OfferFilters {
    /// Replaces the client's filter. `available` is what the agent has free now, after the
    /// declined resources came back.
    pub fn insert(
        &mut self,
        client: u32,
        refused: Resources,
        until: Instant,
        available: &Resources,
    ) {
        match self.clients.binary_search(&client) {
            Ok(at) => {
                self.list[at] = OfferFilter { until, refused };
            }
            Err(at) => {
                self.clients.insert(at, client);
                self.list.insert(at, OfferFilter { until, refused });
            }
        }
        self.earliest = Some(self.earliest.map_or(until, |e| e.min(until)));
        if self.cached_for.as_ref() == Some(available) {
            let at = self.clients.binary_search(&client).expect("just inserted");
            let holds = self.list[at].refused.contains(available);
            self.set_bit(client, holds);
        } else {
            self.cached_for = None;
        }
    }

    /// Removes the filters of the clients `select` picks; true when any was removed.
    pub fn remove(&mut self, mut select: impl FnMut(u32) -> bool) -> bool {
        let before = self.list.len();
        self.retain(|client, _| !select(client));
        if self.list.len() != before {
            self.earliest = self.list.iter().map(|f| f.until).min();
            self.cached_for = None;
            true
        } else {
            false
        }
    }

    /// Drops filters that expired by `now`; true when any did.
    pub fn expire(&mut self, now: Instant) -> bool {
        if self.earliest.is_none_or(|e| e > now) {
            return false;
        }
        self.retain(|_, filter| filter.until > now);
        self.earliest = self.list.iter().map(|f| f.until).min();
        self.cached_for = None;
        true
    }

    /// Makes the refusal bits valid for `available` (call after `expire`).
    pub fn prepare(&mut self, available: &Resources) {
        if self.cached_for.as_ref() == Some(available) {
            return;
        }
        self.refusing.iter_mut().for_each(|word| *word = 0);
        if self.list.is_empty() {
            self.cached_for = None;
            return;
        }
        for i in 0..self.list.len() {
            let holds = self.list[i].refused.contains(available);
            self.set_bit(self.clients[i], holds);
        }
        self.cached_for = Some(available.clone());
    }

    /// After `prepare(available)`: sets the bit of every client that refuses all of
    /// `available` in `mask`.
    pub fn add_refusing_to(&self, mask: &mut [u64]) {
        for (word, refusing) in mask.iter_mut().zip(&self.refusing) {
            *word |= refusing;
        }
    }

    #[cfg(test)]
    fn refuses_all(&self, client: u32) -> bool {
        self.refusing
            .get(client as usize / 64)
            .is_some_and(|word| word & (1 << (client % 64)) != 0)
    }

    /// The exact check for an offer that is not simply everything free (reservations, quota).
    pub fn refuses(&self, client: u32, offer: &Resources, now: Instant) -> bool {
        self.clients
            .binary_search(&client)
            .is_ok_and(|at| self.list[at].until > now && self.list[at].refused.contains(offer))
    }

    fn set_bit(&mut self, client: u32, on: bool) {
        let word = client as usize / 64;
        if self.refusing.len() <= word {
            if !on {
                return;
            }
            self.refusing.resize(word + 1, 0);
        }
        let bit = 1u64 << (client % 64);
        if on {
            self.refusing[word] |= bit;
        } else {
            self.refusing[word] &= !bit;
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(u32, &OfferFilter) -> bool) {
        let mut i = 0;
        while i < self.list.len() {
            if keep(self.clients[i], &self.list[i]) {
                i += 1;
            } else {
                self.clients.remove(i);
                self.list.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn refusal_bits_follow_the_free_resources() {
        let now = Instant::now();
        let free = Resources::parse("cpus:4;mem:1024").unwrap();
        let mut f = OfferFilters::default();
        f.insert(3, free.clone(), now + Duration::from_secs(5), &free);
        f.prepare(&free);
        assert!(f.refuses_all(3));
        assert!(!f.refuses_all(4));
        // More free than was declined: not refused any more.
        let more = Resources::parse("cpus:5;mem:1024").unwrap();
        f.prepare(&more);
        assert!(!f.refuses_all(3));
        // Less: still refused.
        let less = Resources::parse("cpus:1;mem:1024").unwrap();
        f.prepare(&less);
        assert!(f.refuses_all(3));
        assert!(f.refuses(3, &less, now));
        assert!(!f.refuses(3, &more, now));
        assert!(f.expire(now + Duration::from_secs(6)));
        f.prepare(&less);
        assert!(!f.refuses_all(3));
        assert!(f.list.is_empty());
    }
}

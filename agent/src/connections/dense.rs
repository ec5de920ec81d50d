//! Connections by 4-tuple, stored densely: the hash table maps a key to a position in a
//! vector, so its entries stay small (a key and a position) and walking every connection reads
//! one contiguous vector. At 5,000 connections a second over 10,000 open ones, a table holding
//! whole connections spent its time moving 200-byte entries and missing the cache.
use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;

use super::{ConnKey, Connection};

#[derive(Debug, Default)]
pub struct DenseConnections {
    position: FxHashMap<ConnKey, u32>,
    /// Every connection once; `position[c.key]` is its index.
    connections: Vec<Connection>,
}

impl DenseConnections {
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    pub fn contains_key(&self, key: &ConnKey) -> bool {
        self.position.contains_key(key)
    }

    pub fn get(&self, key: &ConnKey) -> Option<&Connection> {
        let at = *self.position.get(key)?;
        self.connections.get(at as usize)
    }

    pub fn get_mut(&mut self, key: &ConnKey) -> Option<&mut Connection> {
        let at = *self.position.get(key)?;
        self.connections.get_mut(at as usize)
    }

    /// Inserts `conn` under its key; returns the connection it replaced.
    pub fn insert(&mut self, conn: Connection) -> Option<Connection> {
        match self.position.entry(conn.key) {
            Entry::Occupied(at) => Some(std::mem::replace(
                &mut self.connections[*at.get() as usize],
                conn,
            )),
            Entry::Vacant(slot) => {
                slot.insert(self.connections.len() as u32);
                self.connections.push(conn);
                None
            }
        }
    }

    /// Removes the connection under `key`; the last one takes its place.
    pub fn remove(&mut self, key: &ConnKey) -> Option<Connection> {
        let at = self.position.remove(key)? as usize;
        let removed = self.connections.swap_remove(at);
        if let Some(moved) = self.connections.get(at)
            && let Some(position) = self.position.get_mut(&moved.key)
        {
            *position = at as u32;
        }
        Some(removed)
    }

    pub fn values(&self) -> std::slice::Iter<'_, Connection> {
        self.connections.iter()
    }

    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, Connection> {
        self.connections.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::{Comm, Direction, Source};

    fn conn(port: u16) -> Connection {
        let key = ConnKey {
            local: format!("127.0.0.1:{port}").parse().unwrap(),
            remote: "127.0.0.1:80".parse().unwrap(),
        };
        Connection::new(
            key,
            Direction::Outbound,
            (1, Comm::default()),
            0,
            Source::Ebpf { sk: port as u64 },
        )
    }

    #[test]
    fn removal_keeps_every_other_connection_findable() {
        let mut map = DenseConnections::default();
        for port in 1..=5 {
            assert!(map.insert(conn(port)).is_none());
        }
        let replaced = map.insert(conn(3)).expect("replaces");
        assert_eq!(replaced.key.local.port(), 3);
        assert_eq!(map.len(), 5);
        // Removing the first moves the last into its place.
        assert_eq!(map.remove(&conn(1).key).unwrap().key.local.port(), 1);
        assert!(map.remove(&conn(1).key).is_none());
        for port in 2..=5 {
            assert_eq!(map.get(&conn(port).key).unwrap().key.local.port(), port);
        }
        // Removing the last moves nothing.
        map.remove(&conn(4).key);
        map.get_mut(&conn(5).key).unwrap().pid = 9;
        let mut ports: Vec<u16> = map.values().map(|c| c.key.local.port()).collect();
        ports.sort_unstable();
        assert_eq!(ports, [2, 3, 5]);
        assert_eq!(map.get(&conn(5).key).unwrap().pid, 9);
        assert!(!map.contains_key(&conn(4).key));
    }
}

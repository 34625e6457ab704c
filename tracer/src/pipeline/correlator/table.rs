//! Where the open records live: a slab of [`Conn`]s that grows by an eighth, found by
//! the socket's kernel address (or, for connections read from sock_diag, by their ends
//! until an event names the socket), on an intrusive list from least to most recently
//! active for eviction and reaping.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    net::SocketAddr,
};

use super::{conn::Conn, record::KeptEvents};
use crate::event::{EventMeta, TraceEvent};

/// No slot: the end of a list.
pub(super) const NIL: u32 = u32::MAX;

/// The open records.
pub(super) struct Table {
    max: usize,
    slab: Vec<Conn>,
    /// Parallel to `slab` when events are kept, else empty.
    kept: Vec<KeptEvents>,
    keep_events: bool,
    by_sock: HashMap<u64, u32, BuildHasherDefault<SockHasher>>,
    /// Records of connections read from sock_diag, which gives no kernel socket address:
    /// by (local, remote) until their first event names the socket.
    unbound: HashMap<(SocketAddr, SocketAddr), u32>,
    /// Least recently active first.
    lru_head: u32,
    lru_tail: u32,
    free_head: u32,
    open: usize,
}

impl Table {
    pub(super) fn new(max: usize, keep_events: bool) -> Self {
        Self {
            max,
            slab: Vec::new(),
            kept: Vec::new(),
            keep_events,
            by_sock: HashMap::default(),
            unbound: HashMap::new(),
            lru_head: NIL,
            lru_tail: NIL,
            free_head: NIL,
            open: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.open
    }

    pub(super) fn is_full(&self) -> bool {
        self.open >= self.max
    }

    pub(super) fn slot(&self, sock: u64) -> Option<u32> {
        self.by_sock.get(&sock).copied()
    }

    pub(super) fn has_unbound(&self) -> bool {
        !self.unbound.is_empty()
    }

    pub(super) fn has_unbound_ends(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.unbound.contains_key(&(local, remote))
    }

    /// The record of an existing connection with these ends whose socket is not known.
    pub(super) fn unbound_slot(&self, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
        self.unbound.get(&(local, remote)).copied()
    }

    /// Gives an existing connection's record the kernel address its first event names.
    pub(super) fn bind(&mut self, meta: &EventMeta) {
        if let Some(slot) = self.unbound.remove(&(meta.local, meta.remote)) {
            self.slab[slot as usize].sock = meta.sock;
            self.by_sock.insert(meta.sock, slot);
        }
    }

    pub(super) fn conn(&self, slot: u32) -> &Conn {
        &self.slab[slot as usize]
    }

    pub(super) fn conn_mut(&mut self, slot: u32) -> &mut Conn {
        &mut self.slab[slot as usize]
    }

    /// The least recently active record.
    pub(super) fn oldest(&self) -> Option<u32> {
        (self.lru_head != NIL).then_some(self.lru_head)
    }

    /// The records, least recently active first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Conn> {
        std::iter::successors(self.oldest(), |&slot| {
            let next = self.conn(slot).next;
            (next != NIL).then_some(next)
        })
        .map(|slot| self.conn(slot))
    }

    /// Keeps `event` with the record in `slot`, when events are kept.
    pub(super) fn keep(&mut self, slot: u32, event: &TraceEvent) {
        if self.keep_events {
            self.kept[slot as usize].push(event);
        }
    }

    /// Adds `conn` as the most recently active record (the caller makes room first),
    /// found by its socket, or by its ends when its socket is not known (0).
    pub(super) fn insert(&mut self, conn: Conn, local: SocketAddr, remote: SocketAddr) -> u32 {
        let sock = conn.sock;
        let slot = if self.free_head != NIL {
            let slot = self.free_head;
            self.free_head = self.slab[slot as usize].next;
            self.slab[slot as usize] = conn;
            slot
        } else {
            // Grow by an eighth, not double: the slab's slack is memory per connection.
            let len = self.slab.len();
            if len == self.slab.capacity() {
                let more = (len / 8).max(16).min(self.max - len);
                self.slab.reserve_exact(more);
            }
            self.slab.push(conn);
            if self.keep_events {
                self.kept.push(KeptEvents::default());
            }
            len as u32
        };
        if sock == 0 {
            self.unbound.insert((local, remote), slot);
        } else {
            self.by_sock.insert(sock, slot);
        }
        self.link_newest(slot);
        self.open += 1;
        slot
    }

    /// The events kept with the record in `slot` (none when events are not kept).
    pub(super) fn take_kept(&mut self, slot: u32) -> KeptEvents {
        if self.keep_events {
            std::mem::take(&mut self.kept[slot as usize])
        } else {
            KeptEvents::default()
        }
    }

    /// Frees `slot`.
    pub(super) fn remove(&mut self, slot: u32) {
        let conn = &mut self.slab[slot as usize];
        let (sock, ends) = (
            conn.sock,
            (conn.local.get(conn.v4), conn.remote.get(conn.v4)),
        );
        conn.sock = 0;
        conn.release_shared();
        self.unlink(slot);
        self.slab[slot as usize].next = self.free_head;
        self.free_head = slot;
        if sock == 0 {
            self.unbound.remove(&ends);
        } else {
            self.by_sock.remove(&sock);
        }
        self.open -= 1;
    }

    /// Whether `slot` still holds the record `conn_id` (not freed, not reused).
    pub(super) fn holds(&self, slot: u32, conn_id: u64) -> bool {
        let conn = &self.slab[slot as usize];
        conn.sock != 0 && conn.conn_id == conn_id
    }

    /// Marks `slot` the most recently active.
    pub(super) fn touch(&mut self, slot: u32) {
        if self.lru_tail != slot {
            self.unlink(slot);
            self.link_newest(slot);
        }
    }

    fn link_newest(&mut self, slot: u32) {
        let conn = &mut self.slab[slot as usize];
        conn.prev = self.lru_tail;
        conn.next = NIL;
        match self.lru_tail {
            NIL => self.lru_head = slot,
            tail => self.slab[tail as usize].next = slot,
        }
        self.lru_tail = slot;
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let conn = &self.slab[slot as usize];
            (conn.prev, conn.next)
        };
        match prev {
            NIL => self.lru_head = next,
            prev => self.slab[prev as usize].next = next,
        }
        match next {
            NIL => self.lru_tail = prev,
            next => self.slab[next as usize].prev = prev,
        }
    }
}

/// Hashes socket addresses: kernel pointers, not chosen by an attacker, so a
/// multiply-shift hash does instead of SipHash, for a fraction of the cost.
#[derive(Default)]
struct SockHasher(u64);

impl Hasher for SockHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    /// The product's high bits mixed into the low ones, which pick the bucket.
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

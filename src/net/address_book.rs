//! The address book: peers this node has reached (or was told to reach by
//! its operator), with dialable addresses, when they were last seen, how
//! dials to them went and where they came from. Used at start to reconnect
//! without `--bootstrap`, as CometBFT's address book does.
//!
//! Owns the entries' rules: only dialable addresses, learned from a
//! connection that succeeded or from a trusted source (the bootstrap list);
//! never a banned peer; at most `capacity` entries, evicting the worst
//! (most failures over successes), then the oldest. Pure: time comes in as
//! Unix milliseconds; loading and saving are the node's job (through
//! [`crate::store::Store`]).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

/// At most this many addresses are kept per peer.
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// How a peer came to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The operator's `--bootstrap` list.
    Bootstrap,
    /// mDNS on the local link.
    Mdns,
    /// Kademlia's routing table.
    Kademlia,
    /// This node's address book (a peer known from an earlier run).
    AddressBook,
    /// It dialed us.
    Inbound,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Bootstrap => "bootstrap",
            Source::Mdns => "mdns",
            Source::Kademlia => "kademlia",
            Source::AddressBook => "address_book",
            Source::Inbound => "inbound",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Source, String> {
        [
            Source::Bootstrap,
            Source::Mdns,
            Source::Kademlia,
            Source::AddressBook,
            Source::Inbound,
        ]
        .into_iter()
        .find(|x| x.name() == s)
        .ok_or_else(|| format!("unknown peer source {s:?}"))
    }
}

/// One peer in the book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressEntry {
    pub peer: PeerId,
    /// Dialable addresses, without `/p2p/…`.
    pub addrs: Vec<Multiaddr>,
    /// Unix ms of the last successful connection (or of the entry's creation).
    pub last_seen_ms: u64,
    pub successes: u32,
    pub failures: u32,
    /// Where it first came from.
    pub source: Source,
}

impl AddressEntry {
    /// Lower is worse: failures over successes, then age.
    fn rank(&self) -> (i64, u64) {
        (
            i64::from(self.successes) - i64::from(self.failures),
            self.last_seen_ms,
        )
    }
}

/// Whether another node could dial `addr`: TCP (or QUIC) to a concrete IP
/// or a DNS name, with a port; no relay circuits, no unspecified address.
pub fn is_dialable(addr: &Multiaddr) -> bool {
    let mut host = false;
    let mut port = false;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(ip) => host = !ip.is_unspecified() && !ip.is_broadcast(),
            Protocol::Ip6(ip) => host = !ip.is_unspecified(),
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) => host = true,
            Protocol::Tcp(n) | Protocol::Udp(n) => port = n != 0,
            Protocol::P2pCircuit => return false,
            _ => {}
        }
    }
    host && port
}

/// `addr` without a trailing `/p2p/…`.
pub fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// The book (see the module docs).
#[derive(Debug)]
pub struct AddressBook {
    entries: HashMap<PeerId, AddressEntry>,
    capacity: usize,
}

impl AddressBook {
    pub fn new(capacity: usize) -> AddressBook {
        AddressBook {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Entries loaded from an earlier run (the worst dropped past capacity).
    pub fn load(&mut self, entries: impl IntoIterator<Item = AddressEntry>) {
        for mut e in entries {
            e.addrs.retain(is_dialable);
            e.addrs.truncate(MAX_ADDRS_PER_PEER);
            if e.addrs.is_empty() {
                continue;
            }
            self.make_room(&e.peer);
            self.entries.insert(e.peer, e);
        }
    }

    fn make_room(&mut self, keep: &PeerId) {
        while self.entries.len() >= self.capacity && !self.entries.contains_key(keep) {
            let worst = self
                .entries
                .values()
                .min_by_key(|e| e.rank())
                .map(|e| e.peer);
            match worst {
                Some(p) => {
                    self.entries.remove(&p);
                }
                None => break,
            }
        }
    }

    /// A connection to `peer` succeeded: it is (re)entered with the dialable
    /// ones of `addrs` (what we dialed, or what it listens on).
    pub fn connected(&mut self, peer: PeerId, addrs: &[Multiaddr], source: Source, now_ms: u64) {
        let addrs: Vec<Multiaddr> = addrs
            .iter()
            .map(without_peer_id)
            .filter(is_dialable)
            .collect();
        if addrs.is_empty() && !self.entries.contains_key(&peer) {
            return;
        }
        let e = self.entry(peer, source, now_ms);
        e.successes = e.successes.saturating_add(1);
        e.last_seen_ms = now_ms;
        // Newest first, so a peer that moved is dialed where it is now.
        for a in addrs.into_iter().rev() {
            e.addrs.retain(|x| *x != a);
            e.addrs.insert(0, a);
        }
        e.addrs.truncate(MAX_ADDRS_PER_PEER);
    }

    /// Addresses a connected peer reports it listens on (identify): added to
    /// its entry if it has one; the connection vouches for the peer, and a
    /// wrong address only fails its dial (the peer id is checked).
    pub fn listen_addrs(&mut self, peer: PeerId, addrs: &[Multiaddr]) {
        if let Some(e) = self.entries.get_mut(&peer) {
            for a in addrs.iter().map(without_peer_id).filter(is_dialable) {
                add_addr(&mut e.addrs, a);
            }
        }
    }

    /// The operator named this peer (bootstrap): trusted before any connection.
    pub fn trusted(&mut self, peer: PeerId, addr: &Multiaddr, source: Source, now_ms: u64) {
        let a = without_peer_id(addr);
        if !is_dialable(&a) {
            return;
        }
        let e = self.entry(peer, source, now_ms);
        add_addr(&mut e.addrs, a);
    }

    /// The entry of `peer`, made (after making room) if it has none.
    fn entry(&mut self, peer: PeerId, source: Source, now_ms: u64) -> &mut AddressEntry {
        self.make_room(&peer);
        self.entries.entry(peer).or_insert_with(|| AddressEntry {
            peer,
            addrs: Vec::new(),
            last_seen_ms: now_ms,
            successes: 0,
            failures: 0,
            source,
        })
    }

    /// A dial to a peer in the book failed.
    pub fn failed(&mut self, peer: &PeerId) {
        if let Some(e) = self.entries.get_mut(peer) {
            e.failures = e.failures.saturating_add(1);
        }
    }

    /// Banned: never kept, so it is never dialed from the book.
    pub fn remove(&mut self, peer: &PeerId) {
        self.entries.remove(peer);
    }

    pub fn get(&self, peer: &PeerId) -> Option<&AddressEntry> {
        self.entries.get(peer)
    }

    /// Every entry, best first.
    pub fn entries(&self) -> Vec<AddressEntry> {
        let mut v: Vec<AddressEntry> = self.entries.values().cloned().collect();
        v.sort_by(|a, b| b.rank().cmp(&a.rank()).then(a.peer.cmp(&b.peer)));
        v
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Appends `a` unless it is known already or the entry is full.
fn add_addr(addrs: &mut Vec<Multiaddr>, a: Multiaddr) {
    if !addrs.contains(&a) && addrs.len() < MAX_ADDRS_PER_PEER {
        addrs.push(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn only_dialable_addresses_are_kept() {
        assert!(is_dialable(&a(7070)));
        assert!(!is_dialable(&a(0)));
        assert!(!is_dialable(&"/ip4/0.0.0.0/tcp/7070".parse().unwrap()));
        assert!(!is_dialable(&"/ip4/1.2.3.4".parse().unwrap()));
        assert!(is_dialable(&"/dns4/example.org/tcp/1".parse().unwrap()));
        let mut book = AddressBook::new(10);
        let p = PeerId::random();
        book.connected(
            p,
            &[a(0), "/ip4/0.0.0.0/tcp/1".parse().unwrap()],
            Source::Inbound,
            1,
        );
        assert!(book.get(&p).is_none(), "nothing dialable, no entry");
        let with_id = a(5).with(Protocol::P2p(p));
        book.connected(p, &[with_id], Source::Kademlia, 2);
        assert_eq!(book.get(&p).unwrap().addrs, vec![a(5)]);
    }

    #[test]
    fn the_book_is_bounded_and_evicts_the_worst_then_the_oldest() {
        let mut book = AddressBook::new(3);
        let (good, flaky, old, new) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        book.connected(good, &[a(1)], Source::Bootstrap, 10);
        book.connected(good, &[a(1)], Source::Bootstrap, 11);
        book.connected(flaky, &[a(2)], Source::Mdns, 12);
        book.failed(&flaky);
        book.failed(&flaky);
        book.connected(old, &[a(3)], Source::Kademlia, 5);
        book.connected(new, &[a(4)], Source::Inbound, 20);
        assert_eq!(book.len(), 3);
        assert!(book.get(&flaky).is_none(), "most failures goes first");
        let newer = PeerId::random();
        book.connected(newer, &[a(5)], Source::Inbound, 30);
        assert!(book.get(&old).is_none(), "then the oldest of equal rank");
        assert!(book.get(&good).is_some() && book.get(&new).is_some());
        assert_eq!(book.entries()[0].peer, good, "best first");
        // Loading is bounded the same way.
        let mut small = AddressBook::new(2);
        small.load(book.entries());
        assert_eq!(small.len(), 2);
    }

    #[test]
    fn banned_peers_leave_and_sources_round_trip() {
        let mut book = AddressBook::new(10);
        let p = PeerId::random();
        book.trusted(p, &a(9).with(Protocol::P2p(p)), Source::Bootstrap, 1);
        assert_eq!(book.get(&p).unwrap().source, Source::Bootstrap);
        book.remove(&p);
        assert!(book.is_empty());
        for s in ["bootstrap", "mdns", "kademlia", "address_book", "inbound"] {
            assert_eq!(s.parse::<Source>().unwrap().name(), s);
        }
        assert!("dht".parse::<Source>().is_err());
    }
}

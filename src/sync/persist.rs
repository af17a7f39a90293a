//! What survives a restart of the node's knowledge about peers: the
//! engine's scores and bans, and the network's address book, as the plain
//! records of [`crate::store::peers`].
//!
//! Owns the conversions (an `Instant` does not outlive the process, so
//! expiries are saved as Unix ms and turned back into instants at load;
//! peer ids and addresses as their byte encodings) and the debounce of
//! saves. It reads no clock of its own (times are arguments) and touches
//! the store only through the functions the driver and the node call on
//! the blocking pool; the engine never sees any of it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::{Multiaddr, PeerId};

use crate::net::{AddressEntry, Client, Source};
use crate::store::peers::{AddressRecord, PeerRecord};
use crate::store::{Store, StoreError};
use crate::sync::peer_book::{PeerMemory, Penalty};

/// What a node starts with.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub memory: Vec<PeerMemory>,
    /// Address-book entries, without peers whose ban is still in force.
    pub addresses: Vec<AddressEntry>,
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The engine's memory as records; `now` and `now_ms` are the same moment.
pub fn to_records(memory: &[PeerMemory], now: Instant, now_ms: u64) -> Vec<PeerRecord> {
    memory
        .iter()
        .map(|m| PeerRecord {
            peer: m.peer.to_bytes(),
            score: m.score,
            banned_until_ms: m
                .ban
                .map(|(until, _)| now_ms.saturating_add(ms(until.saturating_duration_since(now)))),
            ban_reason: m.ban.map(|(_, r)| r.name().to_string()),
            left_ms: m
                .left
                .map(|left| now_ms.saturating_sub(ms(now.saturating_duration_since(left)))),
        })
        .collect()
}

/// Records back into memory at another moment: a ban keeps what was left
/// of it in wall-clock time (one that ran out while the node was down is
/// gone), and a departure stays as long ago as it was in wall-clock time
/// (the book drops a score whose retention ran out). A record without a
/// departure (its peer was connected, or an older record) has none: the
/// book counts the restart as its departure. Records that do not parse are
/// skipped.
pub fn from_records(records: &[PeerRecord], now: Instant, now_ms: u64) -> Vec<PeerMemory> {
    records
        .iter()
        .filter_map(|r| {
            let peer = PeerId::from_bytes(&r.peer).ok()?;
            let ban = match (r.banned_until_ms, r.ban_reason.as_deref()) {
                (Some(until), Some(reason)) if until > now_ms => {
                    let reason = Penalty::from_name(reason)?;
                    Some((now + Duration::from_millis(until - now_ms), reason))
                }
                _ => None,
            };
            // A departure before what this clock can express (or after now,
            // if the wall clock stepped back) counts as now: the score is
            // kept longer rather than dropped early.
            let left = r.left_ms.map(|left| {
                now.checked_sub(Duration::from_millis(now_ms.saturating_sub(left)))
                    .unwrap_or(now)
            });
            (ban.is_some() || r.score != 0).then_some(PeerMemory {
                peer,
                score: r.score,
                ban,
                left,
            })
        })
        .collect()
}

pub fn address_records(entries: &[AddressEntry]) -> Vec<AddressRecord> {
    entries
        .iter()
        .map(|e| AddressRecord {
            peer: e.peer.to_bytes(),
            addrs: e
                .addrs
                .iter()
                .map(|a| serde_bytes::ByteBuf::from(a.to_vec()))
                .collect(),
            last_seen_ms: e.last_seen_ms,
            successes: e.successes,
            failures: e.failures,
            source: e.source.name().to_string(),
        })
        .collect()
}

pub fn address_entries(records: &[AddressRecord]) -> Vec<AddressEntry> {
    records
        .iter()
        .filter_map(|r| {
            Some(AddressEntry {
                peer: PeerId::from_bytes(&r.peer).ok()?,
                addrs: r
                    .addrs
                    .iter()
                    .filter_map(|a| Multiaddr::try_from(a.to_vec()).ok())
                    .collect(),
                last_seen_ms: r.last_seen_ms,
                successes: r.successes,
                failures: r.failures,
                source: r.source.parse().unwrap_or(Source::AddressBook),
            })
        })
        .collect()
}

/// Reads what an earlier run saved (blocking: call on the blocking pool).
pub fn load(store: &Store, now: Instant) -> Result<Loaded, StoreError> {
    let data = store.load_peers()?;
    let now_ms = unix_ms();
    let memory = from_records(&data.scores, now, now_ms);
    let banned: std::collections::HashSet<PeerId> = memory
        .iter()
        .filter(|m| m.ban.is_some())
        .map(|m| m.peer)
        .collect();
    let addresses = address_entries(&data.addresses)
        .into_iter()
        .filter(|e| !banned.contains(&e.peer))
        .collect();
    Ok(Loaded { memory, addresses })
}

/// Saves the address book (blocking).
pub fn save_addresses(store: &Store, entries: &[AddressEntry]) -> Result<(), StoreError> {
    store.save_addresses(&address_records(entries))
}

/// When the scores and bans are next saved, and what was saved last, so an
/// unchanged book costs no write.
#[derive(Debug)]
pub struct Debounce {
    interval: Duration,
    next: Instant,
    last: Option<Vec<PeerMemory>>,
}

impl Debounce {
    pub fn new(interval: Duration, now: Instant) -> Debounce {
        Debounce {
            interval,
            next: now + interval,
            last: None,
        }
    }

    /// The memory to save now, if the interval has passed and it changed.
    pub fn due(
        &mut self,
        memory: impl FnOnce() -> Vec<PeerMemory>,
        now: Instant,
    ) -> Option<Vec<PeerMemory>> {
        if !self.interval_passed(now) {
            return None;
        }
        self.changed(memory())
    }

    /// Whether the interval has passed (starting the next one if so).
    pub fn interval_passed(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.interval;
        true
    }

    /// The memory to save regardless of the interval, if it changed.
    pub fn changed(&mut self, memory: Vec<PeerMemory>) -> Option<Vec<PeerMemory>> {
        if self.last.as_ref() == Some(&memory) {
            return None;
        }
        self.last = Some(memory.clone());
        Some(memory)
    }
}

/// The driver's saving: scores and bans when they changed (at most every
/// interval), the address book with them, and once more at shutdown. The
/// writes run on the blocking pool, never on the driver.
pub(crate) struct Saver {
    scores: Debounce,
    /// The address book as last saved (written only when it changed).
    book: Arc<Mutex<Vec<AddressEntry>>>,
}

impl Saver {
    pub(crate) fn new(interval: Duration, now: Instant) -> Saver {
        Saver {
            scores: Debounce::new(interval, now),
            book: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) fn tick(
        &mut self,
        memory: impl FnOnce() -> Vec<PeerMemory>,
        store: &Store,
        client: &Client,
        now: Instant,
    ) {
        if !self.scores.interval_passed(now) {
            return;
        }
        if let Some(memory) = self.scores.changed(memory()) {
            let s = store.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = s.save_peer_scores(&to_records(&memory, now, unix_ms())) {
                    tracing::warn!(error = %e, "cannot save peer scores and bans");
                }
            });
        }
        // The book changes on its own (peers found, dials failed): looked
        // at every interval, written when it differs from the last save.
        let (client, store, saved) = (client.clone(), store.clone(), self.book.clone());
        tokio::spawn(async move {
            let book = client.address_book().await;
            // Empty means the network is gone (or knows nobody yet): keep
            // what was saved rather than forget every peer.
            let changed = {
                let mut last = saved.lock().unwrap_or_else(|e| e.into_inner());
                let changed = !book.is_empty() && *last != book;
                if changed {
                    *last = book.clone();
                }
                changed
            };
            if changed {
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = save_addresses(&store, &book) {
                        tracing::warn!(error = %e, "cannot save the address book");
                    }
                })
                .await;
            }
        });
    }

    /// The last save at shutdown: scores and bans as they are now.
    pub(crate) async fn save_now(&mut self, memory: Vec<PeerMemory>, store: &Store) {
        let Some(memory) = self.scores.changed(memory) else {
            return;
        };
        let (store, now) = (store.clone(), Instant::now());
        let saved = tokio::task::spawn_blocking(move || {
            store.save_peer_scores(&to_records(&memory, now, unix_ms()))
        })
        .await;
        match saved {
            Ok(Ok(())) => tracing::debug!("peer scores and bans saved"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot save peer scores and bans"),
            Err(e) => tracing::warn!(error = %e, "peer save task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::peer_book::PeerBook;

    #[test]
    fn a_ban_keeps_its_remaining_time_across_a_save_and_a_load() {
        let t0 = Instant::now();
        let t0_ms = 1_700_000_000_000;
        let (liar, slow) = (PeerId::random(), PeerId::random());
        let memory = vec![
            PeerMemory {
                peer: liar,
                score: -1000,
                ban: Some((t0 + Duration::from_secs(100), Penalty::BadRequest)),
                left: None,
            },
            PeerMemory {
                peer: slow,
                score: -10,
                ban: None,
                left: None,
            },
        ];
        let records = to_records(&memory, t0, t0_ms);
        // Loaded 30 s later (wall clock), in a process whose clock started anew.
        let t1 = t0 + Duration::from_secs(5);
        let back = from_records(&records, t1, t0_ms + 30_000);
        assert_eq!(back.len(), 2);
        assert_eq!(
            back[0].ban,
            Some((t1 + Duration::from_secs(70), Penalty::BadRequest))
        );
        assert_eq!(back[1].score, -10);
        // Loaded after it ran out: the score stays, the ban does not.
        let late = from_records(&records, t1, t0_ms + 101_000);
        assert_eq!(late[0].ban, None);
        assert_eq!(late[0].score, -1000);
    }

    #[test]
    fn a_departed_score_expires_on_the_clock_of_its_departure_across_a_restart() {
        let retention = Duration::from_secs(600);
        let t0 = Instant::now();
        let t0_ms = 1_700_000_000_000;
        let mut book = PeerBook::with_retention(retention);
        let (gone, here) = (PeerId::random(), PeerId::random());
        for p in [gone, here] {
            book.connected(p, t0);
            book.penalize(&p, Penalty::Timeout, -100, retention, t0);
        }
        // `gone` left 100 s before the save; `here` was connected at it.
        book.disconnected(&gone, t0);
        let saved_at = t0 + Duration::from_secs(100);
        let records = to_records(&book.memory(saved_at), saved_at, t0_ms + 100_000);
        let by_peer = |p: PeerId| records.iter().find(|r| r.peer == p.to_bytes()).unwrap();
        assert_eq!(by_peer(gone).left_ms, Some(t0_ms));
        assert_eq!(by_peer(here).left_ms, None);
        // The node restarts 400 s (wall clock) after `gone` left, in a
        // process whose monotonic clock started anew.
        let t1 = t0 + Duration::from_secs(1);
        let restart_ms = t0_ms + 400_000;
        // 199 s after the restart `gone` is still within its 600 s.
        let mut b = PeerBook::with_retention(retention);
        b.restore(from_records(&records, t1, restart_ms), t1);
        b.connected(gone, t1 + Duration::from_secs(199));
        assert_eq!(b.get(&gone).unwrap().score, -5);
        // 200 s after the restart its retention ran out (not 600 s after).
        let mut b = PeerBook::with_retention(retention);
        b.restore(from_records(&records, t1, restart_ms), t1);
        b.connected(gone, t1 + Duration::from_secs(200));
        assert_eq!(b.get(&gone).unwrap().score, 0);
        // `here` counts as having left at the restart.
        b.connected(here, t1 + Duration::from_secs(599));
        assert_eq!(b.get(&here).unwrap().score, -5);
        // A restart after the retention drops the departed score outright.
        let mut late = PeerBook::with_retention(retention);
        late.restore(from_records(&records, t1, t0_ms + 600_000), t1);
        let kept: Vec<PeerId> = late.memory(t1).into_iter().map(|m| m.peer).collect();
        assert_eq!(kept, vec![here]);
    }

    #[test]
    fn saves_are_debounced_and_skipped_when_nothing_changed() {
        let t0 = Instant::now();
        let mut d = Debounce::new(Duration::from_secs(5), t0);
        let m = vec![PeerMemory {
            peer: PeerId::random(),
            score: -5,
            ban: None,
            left: None,
        }];
        assert!(d.due(|| m.clone(), t0).is_none(), "not before the interval");
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(d.due(|| m.clone(), t1), Some(m.clone()));
        assert!(d.due(|| m.clone(), t1 + Duration::from_secs(5)).is_none());
        assert!(d.changed(Vec::new()).is_some(), "a change is saved");
    }

    #[test]
    fn address_entries_round_trip_through_records() {
        let e = AddressEntry {
            peer: PeerId::random(),
            addrs: vec!["/ip4/127.0.0.1/tcp/7070".parse().unwrap()],
            last_seen_ms: 42,
            successes: 3,
            failures: 1,
            source: Source::Mdns,
        };
        let back = address_entries(&address_records(std::slice::from_ref(&e)));
        assert_eq!(back, vec![e]);
    }
}

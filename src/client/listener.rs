//! The `listener` threads of the [client](super), one per listening
//! socket: accepting connections, backing off while `accept()` fails, and
//! the short-lived `incoming ADDR` threads that read each remote's
//! handshake within one deadline and hand the stream to the torrent it
//! names. Pending handshakes are capped in all and per IP, across every
//! socket (an IPv6 remote counts by its /64, the block one host or one
//! home network gets); when every place is taken, one pending for over a
//! second gives way to a newcomer. An IPv4 remote reaching an IPv6 socket
//! (`--bind ::`) is seen by its IPv4 address, not the mapped IPv6 form.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::{Route, Router};
use crate::peer::open::read_exact_before;
use crate::peer::wire::{self, Handshake};
use crate::peer_list::host_of;
use crate::piece_manager::Event;

/// Handshakes being read at once; more incoming connections wait in the
/// kernel's accept queue (for about a second at most, when every place is
/// held by a slow one: the oldest then gives its place up).
pub const MAX_PENDING_HANDSHAKES: usize = 32;
/// Handshakes being read at once from one IP.
pub const MAX_PENDING_PER_IP: usize = 4;
/// How long an incoming connection may take to send its whole handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after `accept()` fails; it doubles while failures last.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait between two `accept()`s that fail.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A `listener` thread: each accepted connection gets a thread that reads
/// its handshake and routes it, if it gets a place in `pending`.
pub(super) fn accept_loop(
    listener: &TcpListener,
    pending: &Arc<Pending>,
    router: &Arc<Router>,
    stop: &AtomicBool,
) {
    let mut failing = Failing::default();
    loop {
        // Leave newcomers in the kernel's accept queue while every place is
        // taken, rather than accept and close them: a burst of honest
        // peers is served a little later instead of refused.
        let Some(room) = pending.wait_for_room(stop) else {
            return;
        };
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (stream, addr) = match accepted {
            Ok((stream, addr)) => {
                failing.ended();
                (
                    stream,
                    SocketAddr::new(addr.ip().to_canonical(), addr.port()),
                )
            }
            // The remote gave up before we took it: nothing is wrong here.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // Out of file descriptors (or memory): retrying at once
                // would fail again, at full speed.
                thread::sleep(failing.failed(&e));
                continue;
            }
        };
        let closer = stream.try_clone().ok();
        let Some(slot) = pending.take(room, addr.ip(), closer, Instant::now()) else {
            debug!("{addr}: too many handshakes in progress from it or in all, closing");
            continue;
        };
        let router = Arc::clone(router);
        // Detached: it ends within HANDSHAKE_TIMEOUT whatever the remote does.
        let spawned = thread::Builder::new()
            .name(format!("incoming {addr}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                let _slot = slot;
                route_incoming(stream, addr, &router);
            });
        if let Err(e) = spawned {
            warn!("{addr}: cannot start a thread for the connection: {e}");
        }
    }
}

/// A streak of failed `accept()`s: its length and the next wait.
#[derive(Debug, Default)]
struct Failing {
    count: u64,
    wait: Duration,
}

impl Failing {
    /// One more failure: logs the first of a streak, returns how long to wait.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        if self.count == 0 {
            warn!("accepting connections failed: {e}; retrying less often until it works again");
            self.wait = FIRST_ACCEPT_BACKOFF;
        } else {
            self.wait = (self.wait * 2).min(MAX_ACCEPT_BACKOFF);
        }
        self.count += 1;
        self.wait
    }

    /// An `accept()` worked: ends the streak, if any.
    fn ended(&mut self) {
        if self.count > 0 {
            log::info!("accepting connections again after {} failures", self.count);
            self.count = 0;
        }
    }
}

/// Handshakes being read: in all and per IP. When every place is taken, a
/// handshake pending for [`PENDING_EVICT_AFTER`] gives its place up to a
/// newcomer (its connection is shut down): an honest remote sends its
/// handshake within a round trip, so only slow or silent ones lose it, and
/// drippers from many addresses cannot keep newcomers out for the whole
/// handshake deadline.
#[derive(Debug, Default)]
pub(super) struct Pending {
    state: Mutex<PendingState>,
    /// Signalled when a place is given back, and at shutdown.
    room: Condvar,
}

#[derive(Debug, Default)]
struct PendingState {
    /// Pending handshakes by [`host_of`].
    per_ip: HashMap<IpAddr, usize>,
    /// Each pending handshake by id: its [`host_of`], since when, and a
    /// handle on its socket to shut it down with.
    entries: HashMap<u64, (IpAddr, Instant, Option<TcpStream>)>,
    next_id: u64,
    /// Free places reserved by listeners about to accept (a [`Room`] that
    /// is `free`).
    reserved: usize,
}

/// A handshake pending this long may lose its place to a newcomer.
const PENDING_EVICT_AFTER: Duration = Duration::from_secs(1);

/// What a listener may accept into, from [`Pending::wait_for_room`],
/// used up by [`Pending::take`].
#[derive(Debug)]
pub(super) struct Room {
    pending: Arc<Pending>,
    /// A free place is held for it (counted in `reserved`, given back on
    /// drop); else every place is taken and the oldest handshake may give
    /// its place up.
    free: bool,
}

/// One handshake's place in [`Pending`], given back on drop.
struct PendingSlot {
    pending: Arc<Pending>,
    id: u64,
}

impl PendingState {
    fn forget(&mut self, id: u64) -> Option<(IpAddr, Instant, Option<TcpStream>)> {
        let entry = self.entries.remove(&id)?;
        if let Some(count) = self.per_ip.get_mut(&entry.0) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&entry.0);
            }
        }
        Some(entry)
    }
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Room for one more handshake at `now`: a free place, reserved (so
    /// that two listeners woken by one freed place do not both accept into
    /// it), or, when every place is taken, leave to evict the oldest if it
    /// is pending for [`PENDING_EVICT_AFTER`]. Otherwise how long until
    /// the oldest may be evicted.
    fn reserve_locked(
        self: &Arc<Self>,
        state: &mut PendingState,
        now: Instant,
    ) -> Result<Room, Duration> {
        if state.entries.len() + state.reserved < MAX_PENDING_HANDSHAKES {
            state.reserved += 1;
            return Ok(Room {
                pending: Arc::clone(self),
                free: true,
            });
        }
        let oldest = state.entries.values().map(|entry| entry.1).min();
        let age = oldest.map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        match PENDING_EVICT_AFTER
            .checked_sub(age)
            .filter(|d| !d.is_zero())
        {
            Some(left) => Err(left),
            // Every place reserved by listeners, none taken: wait for them.
            None if oldest.is_none() => Err(PENDING_EVICT_AFTER),
            None => Ok(Room {
                pending: Arc::clone(self),
                free: false,
            }),
        }
    }

    /// [`Pending::reserve_locked`], taking the lock.
    #[cfg(test)]
    fn try_reserve(self: &Arc<Self>, now: Instant) -> Result<Room, Duration> {
        let mut state = self.lock();
        self.reserve_locked(&mut state, now)
    }

    /// A place for a handshake from `ip` at `now`, in `room`, unless that
    /// IP has too many, or (for room that was not a free place) every place
    /// is taken by handshakes younger than [`PENDING_EVICT_AFTER`].
    /// `closer` shuts the connection down if it loses its place. `room` is
    /// used up either way.
    fn take(
        self: &Arc<Self>,
        mut room: Room,
        ip: IpAddr,
        closer: Option<TcpStream>,
        now: Instant,
    ) -> Option<PendingSlot> {
        let key = host_of(ip);
        let mut state = self.lock();
        let was_free = std::mem::take(&mut room.free);
        if was_free {
            // Ours: it becomes the entry below, or is free again.
            state.reserved -= 1;
        }
        if state.per_ip.get(&key).copied().unwrap_or(0) >= MAX_PENDING_PER_IP {
            if was_free {
                self.room.notify_all();
            }
            return None;
        }
        // Other listeners' reserved places are not checked here: one
        // waiting in `accept()` with nobody coming must not keep the last
        // place empty (see `wait_for_room`).
        if state.entries.len() >= MAX_PENDING_HANDSHAKES {
            let (&oldest, &(_, since, _)) =
                state.entries.iter().min_by_key(|(_, entry)| entry.1)?;
            if now.saturating_duration_since(since) < PENDING_EVICT_AFTER {
                return None;
            }
            if let Some((evicted, _, Some(stream))) = state.forget(oldest) {
                debug!("{evicted}: a handshake too slow, giving its place to {ip}");
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        *state.per_ip.entry(key).or_default() += 1;
        state.entries.insert(id, (key, now, closer));
        Some(PendingSlot {
            pending: Arc::clone(self),
            id,
        })
    }
}

impl Pending {
    /// Waits for room to accept one more connection into ([`Room`]): a
    /// free place, reserved for this listener until it takes it or drops
    /// the room, or leave to evict the oldest pending handshake once it is
    /// old enough. `None` once `stop` is set (and [`Pending::wake_all`]
    /// called). A listener waiting in `accept()` holds its reserved place
    /// meanwhile, so while the other listening socket's thread waits there
    /// (for IPv6 newcomers that may never come), the last free place goes
    /// to this one only once the oldest handshake may be evicted; a
    /// newcomer then takes it without evicting anyone.
    pub(super) fn wait_for_room(self: &Arc<Self>, stop: &AtomicBool) -> Option<Room> {
        let mut state = self.lock();
        loop {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            let left = match self.reserve_locked(&mut state, Instant::now()) {
                Ok(room) => return Some(room),
                Err(left) => left,
            };
            state = self
                .room
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Wakes every listener waiting for a place (at shutdown).
    pub(super) fn wake_all(&self) {
        let _state = self.lock();
        self.room.notify_all();
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        if self.free {
            self.pending.lock().reserved -= 1;
            self.pending.room.notify_all();
        }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.pending.lock().forget(self.id);
        self.pending.room.notify_all();
    }
}

/// Reads the remote's handshake and hands the connection to its torrent.
fn route_incoming(mut stream: TcpStream, addr: SocketAddr, router: &Router) {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut bytes = [0u8; wire::HANDSHAKE_LEN];
    let read = stream
        .set_nodelay(true)
        .and_then(|()| read_exact_before(&mut stream, &mut bytes, deadline));
    if let Err(e) = read {
        debug!("{addr}: no handshake: {e}");
        return;
    }
    let handshake = match Handshake::decode(&bytes) {
        Ok(handshake) => handshake,
        Err(e) => {
            debug!("{addr}: {e}, closing");
            return;
        }
    };
    match router.route(&handshake) {
        Route::To(events_tx) => {
            debug!("{addr}: incoming connection");
            // Bounded: a torrent busy checking its data does not read its
            // events, and this thread must end.
            let event = Event::Incoming(Box::new(stream), handshake, addr);
            if events_tx.send_timeout(event, HANDSHAKE_TIMEOUT).is_err() {
                debug!("{addr}: its torrent is not taking connections, closing");
            }
        }
        Route::Unknown(info_hash) => {
            debug!("{addr}: handshake for unknown torrent {info_hash}, closing");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a listener does: room, then a place in it.
    fn take_at(pending: &Arc<Pending>, ip: IpAddr, now: Instant) -> Option<PendingSlot> {
        let room = pending.try_reserve(now).ok()?;
        pending.take(room, ip, None, now)
    }

    #[test]
    fn pending_handshakes_are_capped_per_ip_and_in_all() {
        let pending = Arc::new(Pending::default());
        let now = Instant::now();
        let ip = |last: u8| IpAddr::from([127, 0, 0, last]);
        let one: Vec<PendingSlot> = std::iter::from_fn(|| take_at(&pending, ip(5), now)).collect();
        assert_eq!(one.len(), MAX_PENDING_PER_IP);
        assert!(
            take_at(&pending, ip(1), now).is_some(),
            "another IP still gets in"
        );
        drop(one);
        let mut all = Vec::new();
        for last in 10..=255 {
            all.extend(take_at(&pending, ip(last), now));
        }
        assert_eq!(all.len(), MAX_PENDING_HANDSHAKES);
        drop(all);
        let state = pending.lock();
        assert!(
            state.entries.is_empty() && state.per_ip.is_empty(),
            "every slot came back"
        );
    }

    #[test]
    fn a_handshake_pending_for_a_second_gives_its_place_to_a_newcomer() {
        let pending = Arc::new(Pending::default());
        let start = Instant::now();
        let ip = |n: usize| IpAddr::from([127, 0, 1, n as u8]);
        // The oldest place is the one taken first.
        let held: Vec<PendingSlot> = (0..MAX_PENDING_HANDSHAKES)
            .map(|n| {
                let at = start + Duration::from_millis(n as u64);
                take_at(&pending, ip(n / 4), at).expect("a free place")
            })
            .collect();
        let newcomer = ip(200);
        let soon = start + Duration::from_millis(500);
        assert!(
            take_at(&pending, newcomer, soon).is_none(),
            "young handshakes keep their places"
        );
        let later = start + PENDING_EVICT_AFTER + Duration::from_millis(50);
        let slot = take_at(&pending, newcomer, later).expect("the oldest gave way");
        {
            let state = pending.lock();
            assert_eq!(state.entries.len(), MAX_PENDING_HANDSHAKES);
            assert_eq!(state.per_ip.get(&ip(0)), Some(&3), "the first IP lost one");
        }
        // The evicted one's own drop gives nothing back twice.
        drop(held);
        drop(slot);
        assert!(pending.lock().entries.is_empty());
        assert!(pending.lock().per_ip.is_empty());
    }

    #[test]
    fn ipv6_remotes_are_capped_by_their_64_and_ipv4_ones_by_address() {
        let pending = Arc::new(Pending::default());
        let now = Instant::now();
        let in_one_64: Vec<PendingSlot> = (1..=10u16)
            .filter_map(|n| {
                let ip = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 7, n, 0, 0, n);
                take_at(&pending, ip.into(), now)
            })
            .collect();
        assert_eq!(in_one_64.len(), MAX_PENDING_PER_IP);
        let next_64 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 8, 0, 0, 0, 1);
        assert!(take_at(&pending, next_64.into(), now).is_some());
        assert_eq!(
            host_of("2001:db8:0:7:ffff:1:2:3".parse().unwrap()),
            "2001:db8:0:7::".parse::<IpAddr>().unwrap()
        );
        let v4: IpAddr = [127, 0, 0, 9].into();
        assert_eq!(host_of(v4), v4);
    }

    #[test]
    fn failing_accepts_back_off_to_a_second_and_log_once_per_streak() {
        let mut failing = Failing::default();
        let e = std::io::Error::from_raw_os_error(24);
        let waits: Vec<Duration> = (0..12).map(|_| failing.failed(&e)).collect();
        assert_eq!(waits[0], FIRST_ACCEPT_BACKOFF);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), MAX_ACCEPT_BACKOFF);
        failing.ended();
        assert_eq!(failing.failed(&e), FIRST_ACCEPT_BACKOFF, "a new streak");
    }

    #[test]
    fn one_freed_place_is_reserved_by_one_listener_only() {
        // The regression: the IPv4 and IPv6 listeners both woke for one
        // freed place, both accepted, and the second newcomer was closed.
        let pending = Arc::new(Pending::default());
        let now = Instant::now();
        let ip = |n: usize| IpAddr::from([127, 0, 2, n as u8]);
        let mut held: Vec<PendingSlot> = (0..MAX_PENDING_HANDSHAKES)
            .map(|n| take_at(&pending, ip(n / 4), now).expect("a free place"))
            .collect();
        drop(held.pop());
        let first = pending.try_reserve(now).expect("the freed place");
        let second = pending.try_reserve(now);
        assert!(
            second.is_err(),
            "the second listener waits, it does not accept"
        );
        let slot = pending
            .take(first, ip(100), None, now)
            .expect("the reserved place is there");
        assert_eq!(pending.lock().entries.len(), MAX_PENDING_HANDSHAKES);
        assert_eq!(pending.lock().reserved, 0);
        drop(slot);
        drop(held);
        assert!(pending.lock().entries.is_empty());
    }

    #[test]
    fn room_not_used_is_free_again() {
        let pending = Arc::new(Pending::default());
        let now = Instant::now();
        let ip: IpAddr = [127, 0, 3, 1].into();
        let rooms: Vec<Room> = std::iter::from_fn(|| pending.try_reserve(now).ok()).collect();
        assert_eq!(rooms.len(), MAX_PENDING_HANDSHAKES, "each free place once");
        drop(rooms);
        assert_eq!(pending.lock().reserved, 0);
        // Refused for its IP: the place it was accepted into is given back.
        let same_ip: Vec<PendingSlot> = std::iter::from_fn(|| take_at(&pending, ip, now)).collect();
        assert_eq!(same_ip.len(), MAX_PENDING_PER_IP);
        assert_eq!(pending.lock().reserved, 0);
        let rooms: Vec<Room> = std::iter::from_fn(|| pending.try_reserve(now).ok()).collect();
        assert_eq!(rooms.len(), MAX_PENDING_HANDSHAKES - MAX_PENDING_PER_IP);
    }

    #[test]
    fn a_listener_waiting_for_room_gets_the_place_freed_and_stops_when_told() {
        let pending = Arc::new(Pending::default());
        // Handshakes that never get old enough to be evicted in this test.
        let now = Instant::now() + Duration::from_secs(3600);
        let ip = |n: usize| IpAddr::from([127, 0, 4, n as u8]);
        let mut held: Vec<PendingSlot> = (0..MAX_PENDING_HANDSHAKES)
            .map(|n| take_at(&pending, ip(n / 4), now).expect("a free place"))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (pending, stop) = (Arc::clone(&pending), Arc::clone(&stop));
            thread::spawn(move || pending.wait_for_room(&stop))
        };
        drop(held.pop());
        let room = waiter.join().unwrap().expect("room");
        assert!(room.free, "the freed place, reserved");
        // The place stays reserved: the next listener waits until stopped.
        let waiter = {
            let (pending, stop) = (Arc::clone(&pending), Arc::clone(&stop));
            thread::spawn(move || pending.wait_for_room(&stop).is_none())
        };
        stop.store(true, Ordering::SeqCst);
        pending.wake_all();
        assert!(waiter.join().unwrap(), "no room at shutdown");
        drop(room);
        drop(held);
    }
}

//! Waking an idle peer thread when its manager sends it a command, so that
//! an idle connection sleeps in `poll()` on its socket instead of waking
//! every few milliseconds to look at its command channel.
//!
//! Each connection has a [`Waker`]: an `eventfd` and a flag saying that its
//! thread is parked. The thread parks ([`Waker::park`]) by setting the flag,
//! looking at its channel once more, then polling its socket and the
//! eventfd together; the manager's [`CommandSender::send`] queues the
//! command, then writes to the eventfd if the flag was set. Either the
//! thread sees the command before it polls, or the sender sees the flag and
//! wakes it: no command waits for the poll's timeout.
//!
//! Where no eventfd can be had (out of descriptors, or a system without
//! one) the waker cannot park, and the thread keeps its short read timeout.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::Duration;

use crossbeam_channel::{Receiver, SendError, Sender};
use rustix::event::{PollFd, PollFlags};

use super::PeerCommand;

/// One connection's wake-up: see the [module docs](self).
#[derive(Debug)]
pub struct Waker {
    fd: Option<OwnedFd>,
    parked: AtomicBool,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn event_fd() -> io::Result<OwnedFd> {
    use rustix::event::{EventfdFlags, eventfd};
    Ok(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn event_fd() -> io::Result<OwnedFd> {
    Err(io::ErrorKind::Unsupported.into())
}

impl Waker {
    /// A waker with its eventfd, or one that cannot park if none can be made.
    pub fn new() -> Waker {
        let fd = event_fd()
            .map_err(|e| log::debug!("no eventfd for a peer thread ({e}): it will poll"))
            .ok();
        Waker {
            fd,
            parked: AtomicBool::new(false),
        }
    }

    /// Whether the thread may park (it has an eventfd).
    pub fn can_park(&self) -> bool {
        self.fd.is_some()
    }

    /// Wakes the thread if it is parked (the caller queued a command first).
    pub fn wake(&self) {
        // Pairs with the fence in `park`: either this sees the flag, or the
        // thread sees the command queued before it.
        fence(Ordering::SeqCst);
        if self.parked.swap(false, Ordering::SeqCst)
            && let Some(fd) = &self.fd
        {
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    /// Sleeps until `socket` is readable (or closed, or in error), a
    /// command is queued on `cmd_rx`, or `timeout` passes. Returns whether
    /// the socket is what woke it. Returns at once, `false`, when a command
    /// is already queued or the waker cannot park.
    ///
    /// # Errors
    /// The OS error of `poll()`.
    pub fn park(
        &self,
        socket: BorrowedFd<'_>,
        cmd_rx: &Receiver<PeerCommand>,
        timeout: Duration,
    ) -> io::Result<bool> {
        let Some(fd) = &self.fd else {
            return Ok(false);
        };
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !cmd_rx.is_empty() {
            self.parked.store(false, Ordering::SeqCst);
            return Ok(false);
        }
        let mut fds = [
            PollFd::new(&socket, PollFlags::IN),
            PollFd::new(fd, PollFlags::IN),
        ];
        let timeout = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let polled = rustix::event::poll(&mut fds, Some(&timeout));
        self.parked.store(false, Ordering::SeqCst);
        let socket_ready = !fds[0].revents().is_empty();
        if !fds[1].revents().is_empty() {
            // Drain the count; a wake that raced with another reason to
            // wake up leaves nothing behind but one early return.
            let _ = rustix::io::read(fd, &mut [0u8; 8]);
        }
        match polled {
            Ok(_) => Ok(socket_ready),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl Default for Waker {
    fn default() -> Waker {
        Waker::new()
    }
}

/// The sending end of a peer's command channel, kept by the manager: it
/// wakes the thread if it is parked.
#[derive(Debug, Clone)]
pub struct CommandSender {
    tx: Sender<PeerCommand>,
    waker: Arc<Waker>,
}

impl CommandSender {
    /// Queues `command` for the thread and wakes it.
    ///
    /// # Errors
    /// The command back when the thread has ended.
    pub fn send(&self, command: PeerCommand) -> Result<(), SendError<PeerCommand>> {
        let sent = self.tx.send(command);
        self.waker.wake();
        sent
    }
}

/// A command channel and the waker its thread parks on.
pub fn command_channel() -> (CommandSender, Receiver<PeerCommand>, Arc<Waker>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let waker = Arc::new(Waker::new());
    let sender = CommandSender {
        tx,
        waker: Arc::clone(&waker),
    };
    (sender, rx, waker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::sync::atomic::AtomicU32;
    use std::time::Instant;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        (a, b)
    }

    #[test]
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn without_an_eventfd_the_waker_cannot_park() {
        let (_tx, rx, waker) = command_channel();
        let (socket, _other) = pair();
        assert!(!waker.can_park());
        let woke = waker.park(socket.as_fd(), &rx, Duration::from_secs(30));
        assert!(!woke.unwrap(), "returns at once");
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_command_sent_while_parked_wakes_the_thread_at_once() {
        let (tx, rx, waker) = command_channel();
        assert!(waker.can_park());
        let (socket, _other) = pair();
        let parked = std::thread::spawn(move || {
            let start = Instant::now();
            let woke = waker.park(socket.as_fd(), &rx, Duration::from_secs(30));
            (woke.unwrap(), start.elapsed(), rx.try_recv().is_ok())
        });
        // Give it time to park; the outcome does not depend on it.
        std::thread::sleep(Duration::from_millis(100));
        tx.send(PeerCommand::Shutdown).unwrap();
        let (by_socket, took, got) = parked.join().unwrap();
        assert!(!by_socket, "woken by the command, not the socket");
        assert!(got, "the command is there");
        assert!(took < Duration::from_secs(30), "not by the timeout");
    }

    #[test]
    fn a_command_already_queued_means_no_parking() {
        let (tx, rx, waker) = command_channel();
        let (socket, _other) = pair();
        tx.send(PeerCommand::Choke).unwrap();
        let start = Instant::now();
        let woke = waker.park(socket.as_fd(), &rx, Duration::from_secs(30));
        assert!(!woke.unwrap());
        assert!(start.elapsed() < Duration::from_secs(10), "not the timeout");
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn bytes_on_the_socket_wake_the_thread() {
        let (_tx, rx, waker) = command_channel();
        let (socket, mut other) = pair();
        other.write_all(b"x").unwrap();
        let woke = waker.park(socket.as_fd(), &rx, Duration::from_secs(30));
        assert!(woke.unwrap(), "woken by the socket");
    }

    /// Whether the eventfd holds a wake not yet drained (it is
    /// non-blocking: a read of an empty one fails with `EAGAIN`).
    fn wake_pending(waker: &Waker) -> bool {
        let fd = waker.fd.as_ref().expect("an eventfd");
        rustix::io::read(fd, &mut [0u8; 8]).is_ok()
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_command_sent_while_not_parked_leaves_no_wake_behind() {
        let (tx, rx, waker) = command_channel();
        let (socket, _other) = pair();
        // Sent while not parked: no eventfd write at all.
        tx.send(PeerCommand::Choke).unwrap();
        assert!(rx.try_recv().is_ok());
        assert!(!wake_pending(&waker), "no write to the eventfd");
        let woke = waker.park(socket.as_fd(), &rx, Duration::from_millis(50));
        assert!(!woke.unwrap(), "the timeout, nothing else");
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_park_ended_by_a_command_drains_its_wake() {
        let (tx, rx, waker) = command_channel();
        let (socket, _other) = pair();
        let waker_for_sender = Arc::clone(&waker);
        let sender = std::thread::spawn(move || {
            // Waits for the flag, so the command surely finds it parked.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !waker_for_sender.parked.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::yield_now();
            }
            tx.send(PeerCommand::Choke).unwrap();
            tx
        });
        let woke = waker.park(socket.as_fd(), &rx, Duration::from_secs(30));
        let _tx = sender.join().unwrap();
        assert!(!woke.unwrap());
        assert!(rx.try_recv().is_ok());
        assert!(!wake_pending(&waker), "the wake was read back");
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn commands_sent_at_any_moment_never_leave_a_park_sleeping() {
        // One thread sends commands at irregular moments, each once the
        // last was taken; the other parks with a long timeout and takes
        // them, after a little work (as the peer loop does between looking
        // at its channel and parking), so commands often come in that gap.
        // A command missed there would leave a park sleeping its whole
        // 5 s; 500 ms is far above any scheduling delay.
        const COMMANDS: u32 = 300;
        let (tx, rx, waker) = command_channel();
        let (socket, _other) = pair();
        let taken = Arc::new(AtomicU32::new(0));
        let deadline = Instant::now() + Duration::from_secs(60);
        let sender = {
            let taken = Arc::clone(&taken);
            std::thread::spawn(move || {
                let mut seed = 0x2545_f491_u32;
                for index in 0..COMMANDS {
                    while taken.load(Ordering::SeqCst) < index && Instant::now() < deadline {
                        std::thread::yield_now();
                    }
                    spin_for(Duration::from_micros(u64::from(next(&mut seed) % 1500)));
                    tx.send(PeerCommand::Have(index)).unwrap();
                }
                tx
            })
        };
        let mut got = 0;
        let mut seed = 0x9e37_79b9_u32;
        while got < COMMANDS && Instant::now() < deadline {
            spin_for(Duration::from_micros(u64::from(next(&mut seed) % 1500)));
            let start = Instant::now();
            let woke = waker.park(socket.as_fd(), &rx, Duration::from_secs(5));
            let took = start.elapsed();
            assert!(
                took < Duration::from_millis(500),
                "a park overslept: {took:?}, {got} commands taken"
            );
            assert!(!woke.unwrap(), "the socket stays silent");
            while let Ok(command) = rx.try_recv() {
                assert!(matches!(command, PeerCommand::Have(index) if index == got));
                got += 1;
                taken.store(got, Ordering::SeqCst);
            }
        }
        let _tx = sender.join().unwrap();
        assert_eq!(got, COMMANDS);
    }

    /// The next of a xorshift sequence: irregular, and the same each run.
    fn next(seed: &mut u32) -> u32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 17;
        *seed ^= *seed << 5;
        *seed
    }

    fn spin_for(wait: Duration) {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
}

//! Tier order, promotion, shuffling and the parallel tier threads, with
//! scripted announcers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::*;
use crate::tracker::tests::request;

/// What every scripted announcer of a test writes down: (its name, the event).
type Log = Arc<Mutex<Vec<(usize, Option<Event>)>>>;

/// Answers from a script (then the last answer forever), logging each call.
struct Scripted {
    name: usize,
    answers: Vec<Result<AnnounceResponse, TrackerError>>,
    log: Log,
}

impl Announcer for Scripted {
    fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
        self.log.lock().unwrap().push((self.name, req.event));
        if self.answers.len() > 1 {
            self.answers.remove(0)
        } else {
            self.answers[0].clone()
        }
    }
}

fn down() -> Result<AnnounceResponse, TrackerError> {
    Err(TrackerError::Unreachable {
        url: "udp://t:1".into(),
        reason: "no answer within 15s".into(),
    })
}

fn answer(peer: &str) -> Result<AnnounceResponse, TrackerError> {
    Ok(AnnounceResponse {
        interval: Some(60),
        peers: vec![peer.parse().unwrap()],
        ..AnnounceResponse::default()
    })
}

fn scripted(
    name: usize,
    answers: Vec<Result<AnnounceResponse, TrackerError>>,
    log: &Log,
) -> Box<dyn Announcer> {
    Box::new(Scripted {
        name,
        answers,
        log: Arc::clone(log),
    })
}

/// A tier in the order given (not shuffled).
fn tier(trackers: Vec<Box<dyn Announcer>>) -> Tier {
    Tier {
        trackers: trackers
            .into_iter()
            .map(|announcer| Listed {
                announcer,
                answered: false,
            })
            .collect(),
    }
}

fn names(log: &Log) -> Vec<usize> {
    log.lock()
        .unwrap()
        .drain(..)
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn a_tier_tries_its_trackers_in_order_and_promotes_the_one_that_answered() {
    let log = Log::default();
    let mut tier = tier(vec![
        scripted(0, vec![down()], &log),
        scripted(1, vec![down()], &log),
        scripted(2, vec![answer("127.0.0.1:7000")], &log),
    ]);
    assert_eq!(tier.announce(&request(None)), answer("127.0.0.1:7000"));
    assert_eq!(names(&log), [0, 1, 2]);
    // The one that answered is asked first from now on; the others keep
    // their order behind it.
    assert_eq!(tier.announce(&request(None)), answer("127.0.0.1:7000"));
    assert_eq!(names(&log), [2]);
    let order: Vec<_> = tier.trackers.iter().map(|l| l.answered).collect();
    assert_eq!(order, [true, false, false]);
}

#[test]
fn a_tier_where_nobody_answers_reports_the_last_error() {
    let log = Log::default();
    let refused = Err(TrackerError::Failure("unregistered torrent".into()));
    let mut tier = tier(vec![
        scripted(0, vec![down()], &log),
        scripted(1, vec![refused.clone()], &log),
    ]);
    assert_eq!(tier.announce(&request(None)), refused);
    assert_eq!(names(&log), [0, 1]);
}

#[test]
fn stopped_goes_only_to_the_trackers_of_the_tier_that_answered() {
    let log = Log::default();
    let mut tier = tier(vec![
        scripted(0, vec![down()], &log),
        scripted(1, vec![answer("127.0.0.1:7000")], &log),
    ]);
    tier.announce(&request(Some(Event::Started))).unwrap();
    names(&log);
    assert_eq!(
        tier.announce(&request(Some(Event::Stopped))),
        answer("127.0.0.1:7000")
    );
    assert_eq!(names(&log), [1]);
    let mut silent = super::tests::tier(vec![scripted(0, vec![down()], &log)]);
    assert_eq!(
        silent.announce(&request(Some(Event::Stopped))),
        Err(TrackerError::NoTracker)
    );
    assert!(names(&log).is_empty(), "nobody that never answered is told");
}

#[test]
fn each_tier_is_shuffled_once_and_keeps_its_order_after() {
    let mut shuffled = 0;
    for _ in 0..20 {
        let log = Log::default();
        let tier_of_8 = (0..8).map(|i| scripted(i, vec![down()], &log)).collect();
        let mut list = TrackerList::from_announcers(vec![tier_of_8, vec![]]);
        assert_eq!(list.tier_count(), 1, "the empty tier is left out");
        let tier = &mut list.tiers[0];
        tier.announce(&request(None)).unwrap_err();
        let first = names(&log);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>(), "each tried once");
        tier.announce(&request(None)).unwrap_err();
        assert_eq!(names(&log), first, "no new shuffle per announce");
        if first != (0..8).collect::<Vec<_>>() {
            shuffled += 1;
        }
    }
    // 20 lists in the listed order would happen once in 40320^20.
    assert!(shuffled > 0);
}

#[test]
fn urls_of_other_schemes_are_left_out_with_a_clear_error() {
    let tiers = vec![
        vec![
            "udp://127.0.0.1:1/announce".to_string(),
            "wss://tracker.example/".to_string(),
        ],
        vec!["http://127.0.0.1:1/announce".to_string()],
        vec!["dht://x".to_string()],
    ];
    let (list, rejected) = TrackerList::new(&tiers, Duration::from_secs(1), None);
    assert_eq!(list.tier_count(), 2, "the third tier is left empty");
    let messages: Vec<String> = rejected.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2);
    for m in &messages {
        assert!(
            m.contains("only udp://, http:// and https:// trackers are supported"),
            "{m}"
        );
    }
    assert!(messages[0].contains("wss://tracker.example/"));
}

/// An announcer that says nothing until `release` disconnects (or 20 s).
struct Silent {
    release: Receiver<()>,
}

impl Announcer for Silent {
    fn announce(&mut self, _: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
        let _ = self.release.recv_timeout(Duration::from_secs(20));
        down()
    }
}

#[test]
fn a_silent_tier_does_not_hold_up_another() {
    let (release_tx, release_rx) = bounded::<()>(0);
    let log = Log::default();
    let list = TrackerList::from_announcers(vec![
        vec![Box::new(Silent {
            release: release_rx,
        })],
        vec![scripted(1, vec![answer("127.0.0.1:7001")], &log)],
    ]);
    let (peers_tx, peers_rx) = unbounded();
    let started = Instant::now();
    let trackers = list
        .spawn(request, move |peers| peers_tx.send(peers).unwrap(), true)
        .unwrap();
    assert_eq!(trackers.wait_first(), Ok(()));
    let peers = peers_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(peers, vec!["127.0.0.1:7001".parse().unwrap()]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The silent tier never answered: the exit does not wait out its
    // announce.
    let stopping = Instant::now();
    assert!(trackers.stop(false, Duration::from_secs(10)));
    assert!(stopping.elapsed() < Duration::from_secs(5));
    drop(release_tx);
}

#[test]
fn commands_reach_every_tier_and_stopped_only_those_that_answered() {
    let log = Log::default();
    let list = TrackerList::from_announcers(vec![
        vec![scripted(0, vec![answer("127.0.0.1:7000")], &log)],
        vec![scripted(1, vec![answer("127.0.0.1:7001")], &log)],
        vec![scripted(2, vec![down()], &log)],
    ]);
    let (peers_tx, peers_rx): (Sender<Vec<SocketAddr>>, _) = unbounded();
    let trackers = list
        .spawn(request, move |peers| peers_tx.send(peers).unwrap(), false)
        .unwrap();
    assert_eq!(trackers.wait_first(), Ok(()));
    let mut got: Vec<_> = (0..2)
        .map(|_| peers_rx.recv_timeout(Duration::from_secs(5)).unwrap()[0])
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:7001".parse().unwrap()
        ]
    );
    // The failed tier is waiting for its retry; the others for their
    // interval. `completed` is due on each.
    wait_for(&log, |log| log.iter().any(|&(name, _)| name == 2));
    assert!(trackers.stop(true, Duration::from_secs(10)));
    // The stop waits only for the tiers that answered, so the failed
    // tier's `completed` may still be on its way (this raced on CI).
    wait_for(&log, |log| {
        log.iter().filter(|&&(name, _)| name == 2).count() >= 2
    });
    let mut log = log.lock().unwrap().clone();
    log.sort_by_key(|&(name, _)| name);
    assert_eq!(
        log,
        [
            (0, Some(Event::Started)),
            (0, Some(Event::Completed)),
            (0, Some(Event::Stopped)),
            (1, Some(Event::Started)),
            (1, Some(Event::Completed)),
            (1, Some(Event::Stopped)),
            // It never answered `started`, so `completed` goes as `started`
            // and there is no `stopped`.
            (2, Some(Event::Started)),
            (2, Some(Event::Started)),
        ]
    );
}

fn wait_for(log: &Log, condition: impl Fn(&[(usize, Option<Event>)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition(&log.lock().unwrap()) {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn when_every_tier_fails_first_the_refusal_is_reported() {
    let log = Log::default();
    let refused = TrackerError::Failure("unregistered torrent".into());
    let list = TrackerList::from_announcers(vec![
        vec![scripted(0, vec![down()], &log)],
        vec![scripted(1, vec![Err(refused.clone())], &log)],
    ]);
    let trackers = list.spawn(request, |_| {}, true).unwrap();
    assert_eq!(trackers.wait_first(), Err(refused));
    assert!(trackers.stop(false, Duration::from_secs(10)));
    let log = Log::default();
    let list = TrackerList::from_announcers(vec![vec![scripted(0, vec![down()], &log)]]);
    let trackers = list.spawn(request, |_| {}, true).unwrap();
    assert_eq!(trackers.wait_first(), down().map(|_| ()));
    assert!(trackers.stop(false, Duration::from_secs(10)));
}

//! Handing out work: which pieces each peer fetches, within the memory
//! [`budget`](super::budget), and taking them back (with the blocks
//! received) when a peer gives up, is choked or leaves. Part of the
//! [`PieceManager`]; the picking policy itself is the
//! [`PiecePicker`](crate::piece_picker::PiecePicker)'s.

use super::slot::Held;
use super::{Kept, PieceManager, Returned};
use crate::blame;
use crate::peer::pipeline::pipeline_for_rate;
use crate::peer::{PeerCommand, PeerKey, PieceJob};
use crate::piece_picker::PieceState;

impl PieceManager {
    /// Takes back pieces a peer gives up, keeping any blocks it received so
    /// the next peer finishes the piece instead of starting over.
    pub(super) fn take_back(&mut self, key: PeerKey, returned: Vec<Returned>) {
        let slot = self.peers.get_mut(&key).expect("caller checked the key");
        for Returned { index, partial } in returned {
            let (senders, inherited_count) =
                self.inherited.remove(&(key, index)).unwrap_or_default();
            let Some(pos) = slot.position(index) else {
                continue;
            };
            let charge = slot.assigned.swap_remove(pos).charge;
            if !charge.probe {
                self.picker.release(index);
            }
            let done = matches!(
                self.picker.state(index),
                PieceState::Have | PieceState::Verifying
            );
            let Some(partial) = partial.filter(|_| !done && !self.blame.is_whole_only(index))
            else {
                self.budget.release(charge);
                continue;
            };
            let received = partial.received_count();
            let senders = blame::contributors(senders, slot.addr, received, inherited_count);
            let better = self
                .partials
                .get(&index)
                .is_none_or(|kept| kept.partial.received_count() < partial.received_count());
            if better {
                let kept = Kept {
                    partial,
                    senders,
                    charge,
                };
                if let Some(worse) = self.partials.insert(index, kept) {
                    self.budget.release(worse.charge);
                }
                self.picker.set_partial(index, true);
            } else {
                self.budget.release(charge);
            }
        }
    }

    /// Drops the blocks kept of piece `index`, if any.
    pub(super) fn drop_partial(&mut self, index: u32) {
        if let Some(kept) = self.partials.remove(&index) {
            self.budget.release(kept.charge);
        }
        self.picker.set_partial(index, false);
    }

    /// Gives work to every peer that can take it, the fastest proven ones
    /// first: when the budget is short, they are the ones that use it.
    pub(super) fn assign_all(&mut self) {
        let mut keys: Vec<(bool, std::cmp::Reverse<u64>, PeerKey)> = self
            .peers
            .iter()
            .map(|(&key, p)| (!p.proven, std::cmp::Reverse(p.down_rate), key))
            .collect();
        keys.sort_unstable();
        for (_, _, key) in keys {
            self.assign(key);
        }
    }

    /// Gives an unchoked peer pieces until it has enough to keep its request
    /// pipeline full at its current rate, within the budget. A peer not
    /// proven yet (new, or snubbed) gets one probe; once proven, its probe
    /// grows to the whole piece.
    pub(super) fn assign(&mut self, key: PeerKey) {
        if self.verifying.len() >= self.verifier.backlog_limit() {
            // The workers are behind: no new pieces until they catch up.
            return;
        }
        let Some(slot) = self.peers.get_mut(&key) else {
            return;
        };
        if !slot.unchoked {
            return;
        }
        let layout = *self.storage.layout();
        if slot.proven {
            for held in slot.assigned.iter_mut().filter(|h| h.charge.probe) {
                if !matches!(
                    self.picker.state(held.index),
                    PieceState::Missing | PieceState::InFlight(_)
                ) {
                    // Delivered by another peer: the `have` cancels the probe.
                    continue;
                }
                let size = layout.piece_size(held.index);
                let Some(whole) = self.budget.grow(held.charge, size) else {
                    self.starved = true;
                    return;
                };
                held.charge = whole;
                self.picker.assign(held.index);
                self.table.send(key, PeerCommand::Grow(held.index));
            }
        }
        let target = if slot.proven {
            pipeline_for_rate(slot.down_rate, slot.sample.0 > 0).div_ceil(self.blocks_per_piece) + 1
        } else {
            1
        };
        // What the peer fetches already, and what it gave up when snubbed.
        let mut skip: Vec<u32> = slot
            .assigned
            .iter()
            .map(|h| h.index)
            .chain(slot.avoid.iter().copied())
            .collect();
        while slot.assigned.len() < target {
            let picked = if slot.proven {
                self.picker.pick(&slot.has, &skip)
            } else {
                self.picker.pick_probe(&slot.has, &skip)
            };
            let Some(index) = picked else {
                break;
            };
            let size = layout.piece_size(index);
            let kept = self.partials.remove(&index);
            let charge = match &kept {
                // The kept blocks' buffer goes with the piece, and its charge.
                Some(kept) => Some(kept.charge),
                None if slot.proven => self.budget.whole(size),
                None => self.budget.probe(size),
            };
            let Some(charge) = charge else {
                // (Never with kept blocks: their charge goes with them.)
                self.starved = true;
                break;
            };
            if !charge.probe {
                // A probe leaves its piece to others (see `pick_probe`).
                self.picker.assign(index);
            }
            slot.assigned.push(Held { index, charge });
            skip.push(index);
            let partial = kept.map(|kept| {
                self.picker.set_partial(index, false);
                let count = kept.partial.received_count();
                self.inherited.insert((key, index), (kept.senders, count));
                kept.partial
            });
            let probe = charge.probe;
            self.table.send(
                key,
                PeerCommand::Download(PieceJob {
                    index,
                    partial,
                    probe,
                }),
            );
        }
    }
}

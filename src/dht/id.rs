//! Node ids and XOR distance (BEP 5, "Overview"): the 160-bit space that node
//! ids and info-hashes share, and the contact of one node (its id and address).
//!
//! Owns: [`NodeId`] (random generation, the XOR [`Distance`], the bucket
//! index), and [`NodeInfo`]. Out of scope: how nodes are stored
//! ([`super::routing`]) and their compact wire form ([`super::krpc`]). Pure
//! code.

use std::cmp::Ordering;
use std::fmt;
use std::net::SocketAddr;

/// Bytes in a node id (and an info-hash): 160 bits.
pub const ID_LEN: usize = 20;

/// Bits in a node id.
pub const ID_BITS: usize = ID_LEN * 8;

/// A 160-bit DHT key: a node's id, or an info-hash used as a lookup target.
///
/// An info-hash becomes a target with `NodeId(info_hash.0)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; ID_LEN]);

/// The XOR of two ids, compared as a 160-bit big-endian number: the smaller,
/// the closer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; ID_LEN]);

impl NodeId {
    /// A uniformly random id from the thread's generator.
    pub fn random() -> NodeId {
        NodeId::random_with(&mut fastrand::Rng::new())
    }

    /// A uniformly random id from `rng` (seed it for deterministic tests).
    pub fn random_with(rng: &mut fastrand::Rng) -> NodeId {
        let mut id = [0; ID_LEN];
        rng.fill(&mut id);
        NodeId(id)
    }

    /// The id held in `bytes`, when it is exactly [`ID_LEN`] bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<NodeId> {
        bytes.try_into().ok().map(NodeId)
    }

    /// The XOR distance between `self` and `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0; ID_LEN];
        for (i, byte) in d.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// How many leading bits `self` and `other` share: 0 to [`ID_BITS`]
    /// (equal ids). Node `other` belongs in bucket number `self.common_prefix_len(other)`
    /// of the table whose own id is `self`, capped at its last bucket.
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        self.distance(other).leading_zeros()
    }

    /// Orders `a` and `b` by their distance to `self`: `Less` when `a` is closer.
    pub fn cmp_distance(&self, a: &NodeId, b: &NodeId) -> Ordering {
        self.distance(a).cmp(&self.distance(b))
    }

    /// Bit number `bit` (0 is the most significant bit of byte 0).
    ///
    /// # Panics
    /// When `bit >= ID_BITS`.
    pub fn bit(&self, bit: usize) -> bool {
        self.0[bit / 8] & (0x80 >> (bit % 8)) != 0
    }

    /// A random id that shares exactly the first `prefix_len` bits of `self`
    /// and then, when `flip` is true, differs at bit `prefix_len`; the bits
    /// after are random. This is the target of a bucket refresh: an id that
    /// falls in the bucket.
    pub fn random_in_range(
        &self,
        prefix_len: usize,
        flip: bool,
        rng: &mut fastrand::Rng,
    ) -> NodeId {
        let mut id = NodeId::random_with(rng);
        for bit in 0..prefix_len.min(ID_BITS) {
            id.set_bit(bit, self.bit(bit));
        }
        if flip && prefix_len < ID_BITS {
            id.set_bit(prefix_len, !self.bit(prefix_len));
        }
        id
    }

    fn set_bit(&mut self, bit: usize, value: bool) {
        let mask = 0x80 >> (bit % 8);
        if value {
            self.0[bit / 8] |= mask;
        } else {
            self.0[bit / 8] &= !mask;
        }
    }
}

impl Distance {
    /// Leading zero bits: 0 for the farthest half of the space, [`ID_BITS`]
    /// for distance zero.
    pub fn leading_zeros(&self) -> usize {
        for (i, byte) in self.0.iter().enumerate() {
            if *byte != 0 {
                return i * 8 + byte.leading_zeros() as usize;
            }
        }
        ID_BITS
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    /// Lowercase hex, as other clients and trackers print ids and info-hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A contact: a node's id and the UDP address it answers on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NodeInfo {
    /// The id the node gave (or that another node gave for it).
    pub id: NodeId,
    /// Its UDP address.
    pub addr: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_with_first_byte(first: u8) -> NodeId {
        let mut id = [0; ID_LEN];
        id[0] = first;
        NodeId(id)
    }

    #[test]
    fn distance_is_xor_and_symmetric() {
        let a = NodeId([0xff; ID_LEN]);
        let b = id_with_first_byte(0x0f);
        let d = a.distance(&b);
        assert_eq!(d.0[0], 0xf0);
        assert!(d.0[1..].iter().all(|&x| x == 0xff));
        assert_eq!(d, b.distance(&a));
        assert_eq!(a.distance(&a), Distance([0; ID_LEN]));
    }

    #[test]
    fn common_prefix_counts_shared_leading_bits() {
        let zero = NodeId([0; ID_LEN]);
        assert_eq!(zero.common_prefix_len(&id_with_first_byte(0x80)), 0);
        assert_eq!(zero.common_prefix_len(&id_with_first_byte(0x01)), 7);
        let mut last = [0; ID_LEN];
        last[19] = 1;
        assert_eq!(zero.common_prefix_len(&NodeId(last)), 159);
        assert_eq!(zero.common_prefix_len(&zero), ID_BITS);
    }

    #[test]
    fn ordering_by_distance_follows_the_xor_metric_not_the_numeric_one() {
        let target = id_with_first_byte(0b1000_0000);
        let near = id_with_first_byte(0b1000_0001);
        let far = id_with_first_byte(0b0111_1111);
        // Numerically `far` is nearer to the target (1 below it), by XOR it is the farthest.
        assert_eq!(target.cmp_distance(&near, &far), Ordering::Less);
        let mut ids = vec![far, near, target];
        ids.sort_by(|a, b| target.cmp_distance(a, b));
        assert_eq!(ids, [target, near, far]);
    }

    #[test]
    fn random_in_range_shares_the_prefix_and_flips_the_next_bit() {
        let mut rng = fastrand::Rng::with_seed(7);
        let own = NodeId::random_with(&mut rng);
        for prefix in [0, 1, 7, 8, 100, 159] {
            for _ in 0..20 {
                let id = own.random_in_range(prefix, true, &mut rng);
                assert_eq!(own.common_prefix_len(&id), prefix);
                let any = own.random_in_range(prefix, false, &mut rng);
                assert!(own.common_prefix_len(&any) >= prefix);
            }
        }
        assert_eq!(own.random_in_range(ID_BITS, true, &mut rng), own);
    }

    #[test]
    fn random_ids_differ_and_slices_must_be_twenty_bytes() {
        assert_ne!(NodeId::random(), NodeId::random());
        assert_eq!(NodeId::from_slice(&[3; 20]), Some(NodeId([3; 20])));
        assert_eq!(NodeId::from_slice(&[3; 19]), None);
        assert_eq!(NodeId::from_slice(&[3; 21]), None);
        assert_eq!(
            id_with_first_byte(0xab).to_string(),
            format!("ab{}", "00".repeat(19))
        );
    }
}

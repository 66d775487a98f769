//! The converter's JSON key → column lookup: a small open-addressed table of static keys.
//!
//! Every key of every record is looked up (a conversation has a few hundred), so this is on
//! the hottest path of `convert`. A general hash map paid for a library `memcmp` call per hit
//! and a hash of every byte; keys here are short ASCII names, so hashing the length and the
//! first and last eight bytes spreads them, and those same two words compare a key of up to
//! sixteen bytes in full.

/// A read-only map from static keys, filled once when a table's layout is built.
#[derive(Debug)]
pub struct KeyMap<V> {
    /// Power-of-two sized, at most half full: a probe ends at an empty slot quickly.
    slots: Vec<Option<Slot<V>>>,
    len: usize,
}

#[derive(Debug)]
struct Slot<V> {
    /// The key's [`ends`] and length, compared without reading the key itself.
    ends: (u64, u64),
    len: usize,
    key: &'static str,
    value: V,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
        }
    }
}

/// The first and last eight bytes of `b` (overlapping when shorter than sixteen), zero-padded
/// when shorter than eight: with the length they identify keys of up to sixteen bytes.
#[inline]
fn ends(b: &[u8]) -> (u64, u64) {
    if b.len() >= 8 {
        let head = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let tail = u64::from_le_bytes(b[b.len() - 8..].try_into().unwrap_or_default());
        (head, tail)
    } else {
        // Byte by byte: a `copy_from_slice` of a variable length is a library call.
        let mut w = 0u64;
        for (i, byte) in b.iter().enumerate() {
            w |= u64::from(*byte) << (8 * i);
        }
        (w, 0)
    }
}

#[inline]
fn hash(len: usize, (head, tail): (u64, u64)) -> u64 {
    // Fx-style multiply-rotate mixing.
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let h = (head.wrapping_mul(K)).rotate_left(26) ^ tail;
    (h.wrapping_mul(K).rotate_left(26) ^ len as u64).wrapping_mul(K)
}

impl<V> KeyMap<V> {
    /// Adds `key` (replacing an earlier value of the same key).
    pub fn insert(&mut self, key: &'static str, value: V) {
        if (self.len + 1) * 2 > self.slots.len() {
            let old = std::mem::take(&mut self.slots);
            let size = (old.len() * 2).max(16);
            self.slots = (0..size).map(|_| None).collect();
            self.len = 0;
            for slot in old.into_iter().flatten() {
                self.place(slot.key, slot.value);
            }
        }
        self.place(key, value);
    }

    fn place(&mut self, key: &'static str, value: V) {
        let mask = self.slots.len() - 1;
        let e = ends(key.as_bytes());
        let mut i = hash(key.len(), e) as usize & mask;
        loop {
            match &mut self.slots[i] {
                Some(slot) if slot.key == key => {
                    slot.value = value;
                    return;
                }
                Some(_) => i = (i + 1) & mask,
                empty @ None => {
                    *empty = Some(Slot {
                        ends: e,
                        len: key.len(),
                        key,
                        value,
                    });
                    self.len += 1;
                    return;
                }
            }
        }
    }

    #[inline]
    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).and_then(|i| self.at(i)).map(|(_, v)| v)
    }

    /// Where `key` sits: a position for [`KeyMap::at`] and [`KeyMap::key_at`].
    #[inline]
    pub fn find(&self, key: &str) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let b = key.as_bytes();
        let e = ends(b);
        let mask = self.slots.len() - 1;
        let mut i = hash(b.len(), e) as usize & mask;
        loop {
            match &self.slots[i] {
                None => return None,
                Some(slot) => {
                    if slot.len == b.len()
                        && slot.ends == e
                        && (b.len() <= 16 || slot.key.as_bytes() == b)
                    {
                        return Some(i);
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Positions [`KeyMap::find`] returns are below this.
    pub fn positions(&self) -> usize {
        self.slots.len()
    }

    /// The key and value at `pos`, a position [`KeyMap::find`] returned.
    #[inline]
    pub fn at(&self, pos: usize) -> Option<(&'static str, &V)> {
        self.slots
            .get(pos)
            .and_then(Option::as_ref)
            .map(|s| (s.key, &s.value))
    }

    /// The key and value at `pos` when `text` starts with that key followed by `"`: a JSON key
    /// checked against a guess without scanning or hashing it. Keys here hold no `"` nor `\`,
    /// so a match is the whole key, unescaped.
    #[inline]
    pub fn key_at(&self, pos: usize, text: &[u8]) -> Option<(&'static str, &V)> {
        let slot = self.slots.get(pos)?.as_ref()?;
        let b = text.get(..slot.len)?;
        (text.get(slot.len) == Some(&b'"')
            && ends(b) == slot.ends
            && (b.len() <= 16 || slot.key.as_bytes() == b))
            .then_some((slot.key, &slot.value))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.slots.iter().flatten().map(|s| s.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &[
        "",
        "a",
        "id",
        "segmentStart",
        "segmentEnd",
        "segmentType",
        "conversationId",
        "conversationStart",
        "conversationEnd",
        "mediaStatsMinConversationRFactor",
        "mediaStatsMinConversationMos",
        "requestedRoutingSkillIds",
        "abcdefgh",
        "abcdefghi",
        "abcdefghijklmnop",
        "abcdefghijklmnopq",
    ];

    #[test]
    fn finds_every_key_and_nothing_else() {
        let mut m = KeyMap::default();
        for (i, k) in KEYS.iter().enumerate() {
            m.insert(k, i);
        }
        assert_eq!(m.len(), KEYS.len());
        for (i, k) in KEYS.iter().enumerate() {
            assert_eq!(m.get(k), Some(&i), "{k:?}");
        }
        // Same length and same ends, other middle (only keys over 16 bytes can differ there).
        for miss in [
            "b",
            "ic",
            "segmentStarT",
            "segmentEnds",
            "conversationID",
            "mediaStatsMinConversationXFactor",
            "requestedRoutingSkiLLIds",
            "abcdefgh\0",
            "abcdefghijklmnoq",
            "abcdefghijkXmnopq",
            "\0",
            "a\0",
        ] {
            assert_eq!(m.get(miss), None, "{miss:?}");
        }
        let mut keys: Vec<_> = m.keys().collect();
        keys.sort_unstable();
        let mut want = KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
    }

    /// A guessed position matches the text of its own key (closed by `"`) and nothing else:
    /// not another key, a longer or shorter one, an escaped one, nor a text cut short.
    #[test]
    fn key_at_matches_only_its_key_closed() {
        let mut m = KeyMap::default();
        for (i, k) in KEYS.iter().enumerate() {
            m.insert(k, i);
        }
        for (i, k) in KEYS.iter().enumerate() {
            let pos = m.find(k).expect("inserted");
            assert_eq!(m.at(pos), Some((*k, &i)));
            assert_eq!(
                m.key_at(pos, format!("{k}\":1}}").as_bytes()),
                Some((*k, &i))
            );
            assert_eq!(m.key_at(pos, k.as_bytes()), None, "{k:?} without its quote");
            for other in [format!("{k}x\""), format!("{k}\\\"\""), format!("\\{k}\"")] {
                assert_eq!(m.key_at(pos, other.as_bytes()), None, "{other:?}");
            }
            for o in KEYS.iter().filter(|o| *o != k) {
                let text = format!("{o}\":");
                assert_eq!(m.key_at(pos, text.as_bytes()), None, "{k:?} at {o:?}");
            }
        }
        assert_eq!(m.key_at(m.positions(), b"a\""), None);
        assert!(m.at(m.positions()).is_none());
    }

    #[test]
    fn a_key_inserted_again_is_replaced() {
        let mut m = KeyMap::default();
        m.insert("k", 1);
        m.insert("k", 2);
        assert_eq!((m.get("k"), m.len()), (Some(&2), 1));
        assert!(KeyMap::<u8>::default().get("k").is_none());
    }
}

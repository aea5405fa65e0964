//! Small tables of named texts: a variant's options, a product's specifications, an order
//! line's options.

use std::collections::BTreeMap;

use compact_str::CompactString;
use litemap::LiteMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

/// Pairs a table holds in its own bytes before it needs an allocation: a variant has one to
/// three options (the demo's: color, size).
const INLINE_PAIRS: usize = 2;

/// A small table of named texts in key order, with a map's API (`get`, `insert`, `iter`,
/// `len`).
///
/// A sorted vector: such a table holds a handful of pairs, for which a `BTreeMap`'s first node
/// (room for eleven, ~540 bytes) took ~3 KB of a demo product's memory across its variants.
/// Up to two pairs are held in the table itself, and names and values up to 24 bytes (nearly
/// all: "color", "Red", "size", "M") in the pairs: a random listing page of a large catalog
/// read each variant's options from allocations of their own, scattered over the heap, and
/// waited for memory on each. Always serialized as an object, an empty one included.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct Attributes(SmallVec<[(CompactString, CompactString); INLINE_PAIRS]>);

impl Attributes {
    /// An empty table.
    #[must_use]
    pub const fn new() -> Self {
        Self(SmallVec::new_const())
    }

    /// An empty table with room for `capacity` pairs.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self(SmallVec::with_capacity(capacity))
    }

    /// A table of exactly `pairs`' size (sorted, distinct keys): smallvec's own `clone` and
    /// `collect` round a spilled table's room up to a power of two.
    fn exact(mut pairs: Vec<(CompactString, CompactString)>) -> Self {
        pairs.shrink_to_fit();
        Self(SmallVec::from_vec(pairs))
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value named `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&CompactString> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether a value is named `key`.
    #[must_use]
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: CompactString, value: CompactString) -> Option<CompactString> {
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<CompactString> {
        self.position(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&CompactString, &CompactString)> + Clone {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// How many pairs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no pair.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Stores keep copies (the in-memory one clones what it is given): a copy holds its pairs and
/// no more room.
impl Clone for Attributes {
    fn clone(&self) -> Self {
        if self.0.spilled() {
            Self::exact(self.0.to_vec())
        } else {
            Self(SmallVec::from(self.0.as_slice()))
        }
    }
}

/// In key order; a repeated key keeps its last value (as inserting into a map would).
impl<K: Into<CompactString>, V: Into<CompactString>> FromIterator<(K, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let pairs = pairs.into_iter();
        let mut table = Self::with_capacity(pairs.size_hint().0);
        for (k, v) in pairs {
            table.insert(k.into(), v.into());
        }
        table
    }
}

impl IntoIterator for Attributes {
    type Item = (CompactString, CompactString);
    type IntoIter = smallvec::IntoIter<[(CompactString, CompactString); INLINE_PAIRS]>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The table as plain strings (for views and documents that hold `String`s).
impl From<&Attributes> for BTreeMap<String, String> {
    fn from(table: &Attributes) -> Self {
        table.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

impl From<Attributes> for BTreeMap<String, String> {
    fn from(table: Attributes) -> Self {
        table
            .into_iter()
            .map(|(k, v)| (k.into_string(), v.into_string()))
            .collect()
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// From an object (or litemap's list of pairs, as earlier versions may have stored), in any
/// key order.
impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = LiteMap::<CompactString, CompactString>::deserialize(deserializer)?;
        Ok(Self::exact(pairs.into_tuple_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Attributes {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn serializes_as_an_object_in_key_order_even_when_empty() {
        assert_eq!(serde_json::to_string(&Attributes::new()).unwrap(), "{}");
        let table = pairs(&[("size", "M"), ("color", "Red")]);
        assert_eq!(serde_json::to_string(&table).unwrap(), r#"{"color":"Red","size":"M"}"#);
    }

    #[test]
    fn reads_an_object_in_any_order_and_keeps_a_repeated_key_last() {
        let read: Attributes = serde_json::from_str(r#"{"size":"M","color":"Red"}"#).unwrap();
        assert_eq!(read, pairs(&[("color", "Red"), ("size", "M")]));
        assert_eq!(read.get("size").map(CompactString::as_str), Some("M"));
        assert!(!read.0.spilled(), "two pairs read are held in the table itself");
        let three: Attributes = serde_json::from_str(r#"{"c":"3","a":"1","b":"2"}"#).unwrap();
        assert_eq!(
            (three.0.capacity(), three.get("b").map(CompactString::as_str)),
            (3, Some("2"))
        );
        let empty: Attributes = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        let repeated = pairs(&[("size", "S"), ("color", "Red"), ("size", "L")]);
        assert_eq!(repeated.iter().collect::<Vec<_>>().len(), 2);
        assert_eq!(repeated.get("size").map(CompactString::as_str), Some("L"));
    }

    #[test]
    fn two_pairs_and_short_texts_are_held_in_the_table_itself() {
        let long = "a material description longer than twenty-four bytes";
        let mut table = Attributes::new();
        table.insert("size".into(), "M".into());
        table.insert("color".into(), "Red".into());
        table.insert("material".into(), long.into());
        // Stores keep copies (the in-memory one clones what it is given).
        let kept = table.clone();
        assert_eq!(kept, table);
        let inline = |text: &CompactString| !text.is_heap_allocated();
        assert!(kept.iter().all(|(k, _)| inline(k)), "short names in the table itself");
        assert!(kept.get("size").is_some_and(inline) && kept.get("color").is_some_and(inline));
        assert!(kept.get("material").is_some_and(|v| v.is_heap_allocated() && v == long));
        assert_eq!(
            BTreeMap::from(&kept),
            BTreeMap::from([
                ("color".to_owned(), "Red".to_owned()),
                ("material".to_owned(), long.to_owned()),
                ("size".to_owned(), "M".to_owned())
            ])
        );
        assert!(kept.0.spilled(), "three pairs need an allocation");
        assert_eq!(kept.0.capacity(), 3, "no room kept beyond the pairs");
        assert_eq!(
            kept.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["color", "material", "size"],
            "by value, in key order"
        );
        let two: Attributes = [("size", "M"), ("color", "Red")].into_iter().collect();
        assert!(!two.0.spilled(), "two pairs are held in the table itself");
        assert_eq!(
            two.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["color", "size"]
        );
    }
}

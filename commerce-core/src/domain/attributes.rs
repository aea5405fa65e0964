//! Small tables of named texts: a variant's options, a product's specifications, an order
//! line's options.

use std::ops::{Deref, DerefMut};

use litemap::LiteMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A small table of named texts in key order, with a map's API (`get`, `insert`, `iter`,
/// `len`, … through `Deref` to litemap's `LiteMap`).
///
/// A sorted vector of its own size: such a table holds a handful of pairs, for which a
/// `BTreeMap`'s first node (room for eleven, ~540 bytes) took ~3 KB of a demo product's
/// memory across its variants. Always serialized as an object, an empty one included (litemap's own
/// `Serialize` writes an empty map as `[]` in JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attributes(LiteMap<String, String>);

impl Attributes {
    /// An empty table.
    #[must_use]
    pub const fn new() -> Self {
        Self(LiteMap::new())
    }

    /// An empty table with room for `capacity` pairs.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self(LiteMap::with_capacity(capacity))
    }
}

impl Deref for Attributes {
    type Target = LiteMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Attributes {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// In key order; a repeated key keeps its last value (as inserting into a map would).
impl FromIterator<(String, String)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Self(pairs.into_iter().collect())
    }
}

impl IntoIterator for Attributes {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_tuple_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a String, &'a String);
    type IntoIter = <&'a LiteMap<String, String> as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter())
    }
}

/// From an object (or litemap's list of pairs), in any key order.
impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        LiteMap::deserialize(deserializer).map(Self)
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
        assert_eq!(read.get("size").map(String::as_str), Some("M"));
        let empty: Attributes = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        let repeated = pairs(&[("size", "S"), ("color", "Red"), ("size", "L")]);
        assert_eq!(repeated.iter().collect::<Vec<_>>().len(), 2);
        assert_eq!(repeated.get("size").map(String::as_str), Some("L"));
    }

    #[test]
    fn a_copy_is_kept_in_a_vector_of_its_own_size() {
        let mut table = Attributes::new();
        table.insert("size".to_owned(), "M".to_owned());
        table.insert("color".to_owned(), "Red".to_owned());
        // Stores keep copies (the in-memory one clones what it is given).
        let kept = table.clone();
        assert_eq!(kept, table);
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            [
                ("color".to_owned(), "Red".to_owned()),
                ("size".to_owned(), "M".to_owned())
            ]
        );
        assert_eq!(
            table.clone().0.into_tuple_vec().capacity(),
            2,
            "no room kept beyond the pairs"
        );
    }
}

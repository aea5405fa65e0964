//! Small tables of named texts: a variant's options, a product's specifications, an order
//! line's options.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use compact_str::CompactString;
use litemap::LiteMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A small table of named texts in key order, with a map's API (`get`, `insert`, `iter`,
/// `len`, … through `Deref` to litemap's `LiteMap`).
///
/// A sorted vector of its own size: such a table holds a handful of pairs, for which a
/// `BTreeMap`'s first node (room for eleven, ~540 bytes) took ~3 KB of a demo product's
/// memory across its variants. Names and values up to 24 bytes (nearly all of them: "color",
/// "Red", "size", "M") are held in the table itself, not in an allocation each: a random
/// listing page read its variants' options from ~400 cache lines scattered over the heap. Always serialized as an object, an empty one included (litemap's own
/// `Serialize` writes an empty map as `[]` in JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attributes(LiteMap<CompactString, CompactString>);

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
    type Target = LiteMap<CompactString, CompactString>;

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
impl<K: Into<CompactString>, V: Into<CompactString>> FromIterator<(K, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl IntoIterator for Attributes {
    type Item = (CompactString, CompactString);
    type IntoIter = std::vec::IntoIter<(CompactString, CompactString)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_tuple_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a CompactString, &'a CompactString);
    type IntoIter = <&'a LiteMap<CompactString, CompactString> as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
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
        assert_eq!(read.get("size").map(CompactString::as_str), Some("M"));
        let empty: Attributes = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        let repeated = pairs(&[("size", "S"), ("color", "Red"), ("size", "L")]);
        assert_eq!(repeated.iter().collect::<Vec<_>>().len(), 2);
        assert_eq!(repeated.get("size").map(CompactString::as_str), Some("L"));
    }

    #[test]
    fn a_copy_is_kept_in_a_vector_of_its_own_size_with_short_texts_inside_it() {
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
            BTreeMap::from(kept),
            BTreeMap::from([
                ("color".to_owned(), "Red".to_owned()),
                ("material".to_owned(), long.to_owned()),
                ("size".to_owned(), "M".to_owned())
            ])
        );
        assert_eq!(
            table.clone().0.into_tuple_vec().capacity(),
            3,
            "no room kept beyond the pairs"
        );
    }
}

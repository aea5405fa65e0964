//! Text normalization shared by every adapter, so search ranks the same in memory, on MongoDB
//! and on the MongoDB-wire test server (which has no `$text`).
//!
//! Text is transliterated to ASCII (accents fold), lower-cased, split on anything that is not a
//! letter or digit, stripped of a few stop words, and reduced by a light plural stemmer
//! (`shoes` -> `shoe`, `berries` -> `berry`, `boxes` -> `box`).

use std::collections::BTreeMap;

use crate::domain::{CompactString, Product};

const STOP_WORDS: &[&str] = &["a", "an", "and", "for", "in", "of", "on", "or", "the", "to", "with"];

/// Weight of a term found in the product name.
pub const WEIGHT_NAME: u32 = 8;
/// Weight of a term found in the brand.
pub const WEIGHT_BRAND: u32 = 4;
/// Weight of a term found in the tags.
pub const WEIGHT_TAG: u32 = 4;
/// Weight of a term found in the description.
pub const WEIGHT_DESCRIPTION: u32 = 1;

/// Reduces a simple English plural to its singular.
pub fn stem(word: &str) -> String {
    let n = word.len();
    if n > 4 && word.ends_with("ies") {
        return format!("{}y", &word[..n - 3]);
    }
    if n > 3 && ["sses", "xes", "zes", "ches", "shes"].iter().any(|s| word.ends_with(s)) {
        return word[..n - 2].to_owned();
    }
    if n > 3 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") && !word.ends_with("is") {
        return word[..n - 1].to_owned();
    }
    word.to_owned()
}

/// The normalized terms of a text, in order, without duplicates.
pub fn terms(text: &str) -> Vec<String> {
    let folded = deunicode::deunicode(text).to_ascii_lowercase();
    let mut out: Vec<String> = Vec::new();
    for word in folded.split(|c: char| !c.is_ascii_alphanumeric()) {
        if word.is_empty() || STOP_WORDS.contains(&word) {
            continue;
        }
        let term = stem(word);
        if !out.contains(&term) {
            out.push(term);
        }
    }
    out
}

/// A product's terms and their weights, in term order (a sorted vector of its own size: a
/// product has a few dozen terms, which took a `BTreeMap` several part-empty nodes). Terms up
/// to 24 bytes, nearly all, are held in the vector itself: an allocation each took ~1.3 KB a
/// demo product and, made as the product was stored, sat between its texts in the heap.
pub type TermIndex = litemap::LiteMap<CompactString, u32>;

/// Every term of a product with its best weight (name > brand = tags > description).
pub fn index_terms(product: &Product) -> TermIndex {
    let mut index = BTreeMap::new();
    let mut add = |text: &str, weight: u32| {
        for term in terms(text) {
            let w = index.entry(term).or_insert(0);
            *w = (*w).max(weight);
        }
    };
    add(&product.name, WEIGHT_NAME);
    if let Some(brand) = &product.brand {
        add(brand, WEIGHT_BRAND);
    }
    for tag in &product.tags {
        add(tag, WEIGHT_TAG);
    }
    add(&product.description, WEIGHT_DESCRIPTION);
    index
        .into_iter()
        .map(|(term, weight)| (CompactString::from(term), weight))
        .collect()
}

/// Relevance of a product for the query terms: the sum of the matched terms' weights, or
/// `None` when any term is missing (every term must match).
pub fn score(query: &[String], index: &TermIndex) -> Option<u32> {
    query
        .iter()
        .try_fold(0u32, |acc, t| index.get(t.as_str()).map(|w| acc + w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_accents_and_plurals() {
        assert_eq!(terms("Crème BRÛLÉE dishes"), vec!["creme", "brulee", "dish"]);
        assert_eq!(terms("Running Shoes for the Trail"), vec!["running", "shoe", "trail"]);
        assert_eq!(terms("berries, boxes & glasses"), vec!["berry", "box", "glass"]);
        assert_eq!(terms("bus gas"), vec!["bus", "gas"]);
        assert_eq!(terms("shoe shoes SHOE"), vec!["shoe"]);
    }

    #[test]
    fn score_needs_every_term() {
        let index = TermIndex::from_iter([("red".into(), 8), ("shoe".into(), 1)]);
        assert_eq!(score(&terms("red shoes"), &index), Some(9));
        assert_eq!(score(&terms("blue shoes"), &index), None);
        assert_eq!(score(&[], &index), Some(0));
    }
}

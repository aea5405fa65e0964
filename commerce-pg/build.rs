//! `sqlx::migrate!` embeds `migrations/` when this crate compiles, and cargo does not know it
//! reads that directory: without this, a new or edited migration is left out of a build that
//! finds the crate's sources unchanged.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

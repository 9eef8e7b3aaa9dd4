//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//! `migrations/` at compile time and stable cargo does not track it.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

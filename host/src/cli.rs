//! Placeholder; filled in by its owner.
pub fn main() -> anyhow::Result<()> { Ok(()) }

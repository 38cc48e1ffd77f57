//! hearth with the real models, measured by this process's resident memory: the idle
//! lifecycle's release of memory, load under 32 streaming clients and 100 load/unload
//! cycles. A binary of their own, each test holding a lock, so no other test's model
//! is in the figures.
//!
//! Needs the models installed by `scripts/setup.sh` (`HEARTH_TEST_MODELS`).

#[path = "../models/helpers.rs"]
mod helpers;
mod lifecycle;
mod load;
#[path = "../support/mod.rs"]
mod support;

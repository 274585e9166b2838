//! Option variants of the raftwal backend (`--variants`), so that what each
//! option costs is measured like everything else: in the same run, on the
//! same disk, alternating with `raw`, `raft-engine` and each other.
//!
//! A variant is `RaftLogStore` opened with the workload's usual options
//! (`SyncPolicy::Always` or `Manual`, as the workload's durability asks)
//! and then one option changed. Its backend name is `raftwal:<variant>`.

use std::time::Duration;

use raftwal::{Options, Preallocate, SyncPolicy};

/// One option setting.
pub struct Variant {
    /// `group=value`, as given to `--variants` and printed.
    pub name: &'static str,
    /// The backend name: `raftwal:` and the name.
    pub backend: &'static str,
    /// Changes the option.
    pub apply: fn(Options) -> Options,
}

macro_rules! variant {
    ($name:literal, $apply:expr) => {
        Variant {
            name: $name,
            backend: concat!("raftwal:", $name),
            apply: $apply,
        }
    };
}

/// Every variant `--variants` can name. A group name (`sync`, `segment`,
/// `prealloc`) selects all of its variants.
pub const VARIANTS: &[Variant] = &[
    variant!("sync=always", |o| o.sync(SyncPolicy::Always)),
    variant!("sync=every-8", |o| o.sync(SyncPolicy::EveryN(8))),
    variant!("sync=every-64", |o| o.sync(SyncPolicy::EveryN(64))),
    variant!("sync=interval-1ms", |o| o
        .sync(SyncPolicy::Interval(Duration::from_millis(1)))),
    variant!("sync=interval-10ms", |o| o
        .sync(SyncPolicy::Interval(Duration::from_millis(10)))),
    variant!("sync=manual", |o| o.sync(SyncPolicy::Manual)),
    variant!("segment=16m", |o| o.segment_size(16 << 20)),
    variant!("segment=64m", |o| o.segment_size(64 << 20)),
    variant!("segment=256m", |o| o.segment_size(256 << 20)),
    variant!("prealloc=none", |o| o.preallocate(Preallocate::None)),
    variant!("prealloc=allocate", |o| o
        .preallocate(Preallocate::Allocate)),
    variant!("prealloc=zero-fill", |o| o
        .preallocate(Preallocate::ZeroFill)),
];

/// The indexes into [`VARIANTS`] that `list` (comma-separated names or
/// group names) selects, in table order; panics on a name it does not know.
pub fn select(list: &str) -> Vec<usize> {
    let words: Vec<&str> = list.split(',').map(str::trim).collect();
    for w in &words {
        let known = VARIANTS
            .iter()
            .any(|v| v.name == *w || v.name.split('=').next() == Some(*w));
        if !known {
            let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
            panic!("unknown variant {w}; known: {}", names.join(", "));
        }
    }
    (0..VARIANTS.len())
        .filter(|&i| {
            let v = &VARIANTS[i];
            words
                .iter()
                .any(|w| v.name == *w || v.name.split('=').next() == Some(*w))
        })
        .collect()
}

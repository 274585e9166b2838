//! Option variants of the raftwal backend (`--variants`), so that what each
//! option costs is measured like everything else: in the same run, on the
//! same disk, alternating with `raw`, `raft-engine` and each other.
//!
//! A variant is `RaftLogStore` opened with the workload's usual options
//! (`SyncPolicy::Always` or `Manual`, as the workload's durability asks)
//! and then one option changed (or several: `a+b`). Its backend name is
//! `raftwal:<variant>`.

use std::sync::OnceLock;
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
/// `first`, `prealloc`) selects all of its variants.
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
    variant!("first=1m", |o| o.first_segment_size(1 << 20)),
    variant!("first=64m", |o| o.first_segment_size(64 << 20)),
    variant!("prealloc=none", |o| o.preallocate(Preallocate::None)),
    variant!("prealloc=allocate", |o| o
        .preallocate(Preallocate::Allocate)),
    variant!("prealloc=zero-fill", |o| o
        .preallocate(Preallocate::ZeroFill)),
];

/// A selected variant: one or more settings of [`VARIANTS`] applied in
/// turn (`prealloc=zero-fill+segment=16m`).
pub struct Selected {
    /// The backend name: `raftwal:` and the settings joined by `+`.
    pub backend: &'static str,
    /// Indexes into [`VARIANTS`].
    pub parts: Vec<usize>,
}

impl Selected {
    /// The options of the workload with every setting applied.
    pub fn apply(&self, mut opts: Options) -> Options {
        for &i in &self.parts {
            opts = (VARIANTS[i].apply)(opts);
        }
        opts
    }
}

static SELECTED: OnceLock<Vec<Selected>> = OnceLock::new();

/// The variants selected by `--variants` (empty when it was not given).
pub fn selected() -> &'static [Selected] {
    SELECTED.get().map_or(&[], Vec::as_slice)
}

/// Selects the variants `list` names (comma-separated; a group name such
/// as `prealloc` stands for each of its settings, `a+b` for both settings
/// at once) and returns how many; panics on a name it does not know.
pub fn select(list: &str) -> usize {
    let mut out = Vec::new();
    for word in list.split(',').map(str::trim) {
        let parts: Vec<usize> = if word.contains('+') {
            word.split('+').map(|w| find(w.trim())).collect()
        } else if let Some(group) = group(word) {
            for i in group {
                out.push(Selected {
                    backend: VARIANTS[i].backend,
                    parts: vec![i],
                });
            }
            continue;
        } else {
            vec![find(word)]
        };
        let names: Vec<&str> = parts.iter().map(|&i| VARIANTS[i].name).collect();
        let backend = format!("raftwal:{}", names.join("+"));
        out.push(Selected {
            // Lives as long as the run; a handful of names.
            backend: Box::leak(backend.into_boxed_str()),
            parts,
        });
    }
    let n = out.len();
    assert!(SELECTED.set(out).is_ok(), "--variants given twice");
    n
}

/// The settings of group `word` (the part of a name before `=`), if any.
fn group(word: &str) -> Option<Vec<usize>> {
    let v: Vec<usize> = (0..VARIANTS.len())
        .filter(|&i| VARIANTS[i].name.split('=').next() == Some(word))
        .collect();
    (!v.is_empty()).then_some(v)
}

fn find(name: &str) -> usize {
    VARIANTS
        .iter()
        .position(|v| v.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
            panic!("unknown variant {name}; known: {}", names.join(", "))
        })
}

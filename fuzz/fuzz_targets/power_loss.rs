//! Power loss against "a prefix of the writes", steered by the fuzzer:
//! the operations of `tests/common/log_prefix.rs` (appends, cuts inside
//! and below the active segment, state blobs, compactions, resets, syncs),
//! how they are issued (`Manual`, `EveryN`, `submit`), the preallocation
//! mode, what the background threads may do (the remover's unlinks held or
//! failing, the sealers' directory fsyncs held), the operation at which the
//! power goes, and how the power-loss file system tears, drops and
//! reorders what was not synced, all come from the fuzzer's bytes.
//!
//! After the cut the log must open, show the state after some prefix of
//! the operations no shorter than the last one known durable, show the same
//! on a second open, and take a write.
//!
//! Input: `[flags][cut seed: 8 bytes][crash point: 2 bytes][ops...]`, the
//! rest read as choices two bytes at a time (zeros once it runs out).
#![no_main]

#[path = "../../tests/common/fs_sim.rs"]
#[allow(dead_code)]
mod fs_sim;

#[path = "../../tests/common/log_prefix.rs"]
#[allow(dead_code)]
mod log_prefix;

use fs_sim::{ByteChoices, Choose, Fault, FaultFs, Held, Op, Rng, Scope, SimFs, Trigger};
use libfuzzer_sys::fuzz_target;
use log_prefix::{
    check_after_power_cut, opts, preallocate_of, run_until_power_cut, workload, Issue,
};

const DIR: &str = "/fuzz/log";
const MAX_OPS: usize = 40;
/// The longest a held background operation waits for the power cut.
const HOLD: std::time::Duration = std::time::Duration::from_secs(5);

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let flags = data[0];
    let seed = u64::from_le_bytes(data[1..9].try_into().unwrap_or_default());
    let point = u64::from(u16::from_le_bytes([data[9], data[10]]));
    let issue = Issue::ALL[usize::from(flags % 3)];
    let preallocate = preallocate_of(u64::from(flags / 3));
    let mut choices = ByteChoices { data: &data[11..] };
    let n = (choices.below(MAX_OPS as u64) + 1) as usize;
    let (ops, states) = workload(&mut choices, n);

    let fs = SimFs::new();
    // A crash point past the end means the power goes after the last one.
    fs.arm(Trigger::Op(point + 1));
    let (ffs, faults) = FaultFs::new(fs.handle());
    let mut o = opts(&fs, issue, preallocate);
    fs.gate().set_timeout(HOLD);
    match (flags / 9) % 4 {
        0 => fs.gate().hold(Held::Remove, "raftwal-remove"),
        1 => {
            o = o.file_system(ffs.handle());
            faults.fail_nth(
                Op::Remove,
                u64::from(flags >> 6) + 1,
                Fault::Eio,
                Scope::Background,
            );
        }
        2 => fs.gate().hold(Held::SyncDir, "raftwal-seal"),
        _ => {}
    }
    let r = run_until_power_cut(&fs, DIR, o, &ops, issue).unwrap_or_else(|e| panic!("{e}"));
    let image = fs.cut_power(&mut Rng::new(seed));
    let ctx = format!(
        "{issue:?} {preallocate:?} flags {flags} point {point} (died at {:?}): {} ops acknowledged, {} durable, failure {:?}",
        fs.died_at(),
        r.acked,
        r.durable,
        r.failure
    );
    let o = opts(&image, issue, preallocate);
    if let Err(e) = check_after_power_cut(&o, DIR, &ops, &states, &r) {
        panic!("{ctx}: {e}");
    }
});

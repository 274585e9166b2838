//! Sequences of `RaftLogStore` operations (appends with conflicts, hard and
//! conf states, commits, compactions, created and installed snapshots)
//! chosen by the fuzzer's bytes, checked against raft-rs's `MemStorage` as
//! the model, with I/O errors (the fault-injecting file system) and power
//! cuts (the power-loss file system) from `tests/common/fs_sim.rs` thrown
//! in, and reopens.
//!
//! After every operation that succeeds, the store must show what
//! `MemStorage` shows (first and last index, entries, terms, hard and conf
//! state) and what the exact model of `tests/common/crash_model.rs` shows
//! (which also tracks the term before the first index and the stored
//! snapshot, which `MemStorage` does not keep). After a failed operation the
//! store is reopened (after a power cut, or as it is) and must show the
//! state before the operation or after it, nothing in between.
#![no_main]

#[path = "../../tests/common/fs_sim.rs"]
#[allow(dead_code)]
mod fs_sim;

#[path = "../../tests/common/crash_model.rs"]
#[allow(dead_code)]
mod crash_model;

use crash_model::{next_op, observe, Shape, StoreOp, StoreState};
use fs_sim::{ByteChoices, Choose, Fault, FaultFs, Faults, Op, Rng, Scope, SimFs, Trigger};
use libfuzzer_sys::fuzz_target;
use raft::eraftpb::Snapshot;
use raft::storage::MemStorage;
use raft::{GetEntriesContext, Storage};
use raftwal::{Options, Preallocate, RaftLogStore};

const DIR: &str = "/fuzz/store";
const MAX_STEPS: usize = 80;

/// `MemStorage` holding `st` (what it can hold of it).
fn mem_from(st: &StoreState) -> MemStorage {
    let ms = MemStorage::new();
    {
        let mut core = ms.wl();
        if st.first > 1 {
            let mut s = Snapshot::default();
            s.mut_metadata().index = st.first - 1;
            s.mut_metadata().term = st.prev_term;
            core.apply_snapshot(s).unwrap();
        }
        core.append(&st.entries).unwrap();
        core.set_hardstate(st.hs.clone());
        core.set_conf_state(st.cs.clone());
    }
    ms
}

/// Applies `op` to `MemStorage`, or rebuilds it from the exact model where
/// `MemStorage` means something else (it has no `create_snapshot`; a
/// compaction of every entry makes its first index the snapshot's).
fn apply_mem(ms: &mut MemStorage, op: &StoreOp, after: &StoreState) {
    let mut core = ms.wl();
    match op {
        StoreOp::Persist { entries, hs, cs } => {
            core.append(entries).unwrap();
            if let Some(hs) = hs {
                core.set_hardstate(hs.clone());
            }
            if let Some(cs) = cs {
                core.set_conf_state(cs.clone());
            }
        }
        // `MemStorage::commit_to` also sets the term; the store keeps it.
        StoreOp::CommitTo(i) => core.mut_hard_state().commit = *i,
        StoreOp::Compact(i) if *i <= after.last() => core.compact(*i).unwrap(),
        StoreOp::ApplySnapshot {
            index,
            term,
            cs,
            data,
        } => {
            let mut s = Snapshot::default();
            s.mut_metadata().index = *index;
            s.mut_metadata().term = *term;
            s.mut_metadata().set_conf_state(cs.clone());
            s.data = data.clone().into();
            core.apply_snapshot(s).unwrap();
        }
        StoreOp::Compact(_) | StoreOp::CreateSnapshot { .. } => {
            drop(core);
            *ms = mem_from(after);
        }
    }
}

/// The store against both models. `Err` when a read fails (the power went
/// off meanwhile).
fn try_compare(
    store: &RaftLogStore,
    ms: &MemStorage,
    st: &StoreState,
    ctx: &str,
) -> Result<(), String> {
    let got = observe(store)?;
    assert!(
        got == *st,
        "{ctx}: the store shows {got:?}, the model {st:?}"
    );
    let e = |x: raft::Error| x.to_string();
    let (first, last) = (
        store.first_index().map_err(e)?,
        store.last_index().map_err(e)?,
    );
    assert_eq!(first, ms.first_index().unwrap(), "{ctx}: first index");
    assert_eq!(last, ms.last_index().unwrap(), "{ctx}: last index");
    if last >= first {
        let got = store
            .entries(first, last + 1, None, GetEntriesContext::empty(false))
            .map_err(e)?;
        let want = ms
            .entries(first, last + 1, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got, want, "{ctx}: entries");
        for i in first..=last {
            assert_eq!(
                store.term(i).map_err(e)?,
                ms.term(i).unwrap(),
                "{ctx}: term {i}"
            );
        }
    }
    let (a, b) = (
        store.initial_state().map_err(e)?,
        ms.initial_state().unwrap(),
    );
    assert_eq!(
        (a.hard_state, a.conf_state),
        (b.hard_state, b.conf_state),
        "{ctx}: states"
    );
    Ok(())
}

/// Compares, reopening after a power cut if the power went off under the
/// reads (a background thread can trip an armed cut).
fn compare(w: &mut World, ms: &MemStorage, st: &StoreState, ctx: &str) {
    for seed in 0..4 {
        match try_compare(w.store.as_ref().unwrap(), ms, st, ctx) {
            Ok(()) => return,
            Err(_) if w.sim.is_dead() => w.reopen(true, seed),
            Err(e) => panic!("{ctx}: {e}"),
        }
    }
    panic!("{ctx}: no reads after four power cuts");
}

struct World {
    sim: SimFs,
    faults: Faults,
    ffs: FaultFs,
    store: Option<RaftLogStore>,
    preallocate: Preallocate,
}

impl World {
    fn opts(&self) -> Options {
        Options::default()
            .segment_size(4096)
            .preallocate(self.preallocate)
            .file_system(self.ffs.handle())
    }

    /// Puts the file system `sim` under a new fault injector.
    fn mount(&mut self, sim: SimFs) {
        let (ffs, faults) = FaultFs::new(sim.handle());
        self.sim = sim;
        self.ffs = ffs;
        self.faults = faults;
    }

    /// Closes the store and opens it again: after a power cut if the power
    /// is off (or `cut`), and again after every cut that hits the open.
    fn reopen(&mut self, cut: bool, seed: u64) {
        self.store = None;
        let mut rng = Rng::new(seed);
        if cut || self.sim.is_dead() {
            let img = self.sim.cut_power(&mut rng);
            self.mount(img);
        }
        self.faults.clear();
        for _ in 0..4 {
            match RaftLogStore::open_with(DIR, self.opts()) {
                Ok(s) => {
                    self.sim.disarm();
                    if self.sim.is_dead() {
                        // The armed power cut came after the open returned,
                        // on one of the log's background threads: the store
                        // saw its disk die. Cut again, as for a failed open.
                        drop(s);
                        let img = self.sim.cut_power(&mut rng);
                        self.mount(img);
                        continue;
                    }
                    self.store = Some(s);
                    return;
                }
                Err(_) if self.sim.is_dead() => {
                    let img = self.sim.cut_power(&mut rng);
                    self.mount(img);
                }
                Err(e) => panic!("reopen failed: {e}"),
            }
        }
        panic!("no open after four power cuts");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut src = ByteChoices { data };
    let preallocate = match (src.chance(1, 4), src.chance(1, 2)) {
        (false, _) => Preallocate::None,
        (true, false) => Preallocate::Allocate,
        (true, true) => Preallocate::ZeroFill,
    };
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    let mut w = World {
        sim,
        faults,
        ffs,
        store: None,
        preallocate,
    };
    w.reopen(false, 0);
    let mut st = StoreState::new();
    let mut ms = MemStorage::new();
    let shape = Shape {
        ops: 0,
        max_data: 200,
        max_batch: 4,
    };
    let mut steps = 0;
    while !src.is_empty() && steps < MAX_STEPS {
        steps += 1;
        match src.below(20) {
            0 => {
                let kind = Op::MUTATING[src.below(Op::MUTATING.len() as u64) as usize];
                let fault = match src.below(3) {
                    0 => Fault::Eio,
                    1 => Fault::Enospc,
                    _ => Fault::PartialEio {
                        keep: src.below(64) as usize,
                    },
                };
                w.faults
                    .fail_nth(kind, src.range(1, 8), fault, Scope::Foreground);
            }
            1 => w.sim.arm(Trigger::Op(src.range(1, 40))),
            2 => {
                let seed = src.next_u64();
                w.reopen(true, seed);
                let ctx = "after a power cut between operations";
                compare(&mut w, &ms, &st, ctx);
            }
            3 => {
                w.reopen(false, 0);
                compare(&mut w, &ms, &st, "after a reopen");
            }
            _ => {
                let Some(op) = next_op(&mut src, &st, shape) else {
                    continue;
                };
                let injected = w.faults.injected();
                let result = op.run(w.store.as_ref().unwrap());
                match result {
                    Ok(()) => {
                        st.apply(&op);
                        apply_mem(&mut ms, &op, &st);
                        compare(&mut w, &ms, &st, &format!("after {op:?}"));
                    }
                    Err(e) => {
                        assert!(
                            w.faults.injected() > injected || w.sim.is_dead(),
                            "{op:?} failed with no fault and the power on: {e}"
                        );
                        let mut after = st.clone();
                        after.apply(&op);
                        let cut = src.chance(1, 2);
                        let seed = src.next_u64();
                        w.reopen(cut, seed);
                        let got = observe(w.store.as_ref().unwrap()).unwrap();
                        // Every write is atomic across a crash.
                        let ok = got == st || got == after;
                        assert!(
                            ok,
                            "after {op:?} failed ({e}): {got:?}\nbefore: {st:?}\nafter: {after:?}"
                        );
                        st = got;
                        ms = mem_from(&st);
                        compare(&mut w, &ms, &st, "after recovering a failure");
                    }
                }
            }
        }
    }
    w.reopen(false, 0);
    compare(&mut w, &ms, &st, "at the end");
});

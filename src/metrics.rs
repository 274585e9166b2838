//! Metrics through the `metrics` facade: counters and histograms that any
//! `metrics` recorder (Prometheus, StatsD, ...) picks up; free when none is
//! installed. Names:
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `raftwal_writes_total` | counter | write calls issued |
//! | `raftwal_entries_appended_total` | counter | entries appended |
//! | `raftwal_bytes_written_total` | counter | bytes written to segments |
//! | `raftwal_fsyncs_total` | counter | `fdatasync` calls (group commit shares them) |
//! | `raftwal_fsync_seconds` | histogram | latency of each `fdatasync` |
//! | `raftwal_truncations_total` | counter | conflicting suffixes cut |
//! | `raftwal_compactions_total` | counter | compactions |
//! | `raftwal_resets_total` | counter | resets |
//! | `raftwal_segments_rolled_total` | counter | segment rolls |
//! | `raftwal_recovery_seconds` | histogram | time to open (recover) a log |
//! | `raftwal_recovery_bytes_scanned_total` | counter | bytes read by recovery |
//! | `raftwal_recovery_bytes_dropped_total` | counter | bytes cut from torn tails |

use std::time::Duration;

pub(crate) fn write(entries: usize, bytes: usize) {
    metrics::counter!("raftwal_writes_total").increment(1);
    metrics::counter!("raftwal_entries_appended_total").increment(entries as u64);
    metrics::counter!("raftwal_bytes_written_total").increment(bytes as u64);
}

pub(crate) fn fsync(took: Duration) {
    metrics::counter!("raftwal_fsyncs_total").increment(1);
    metrics::histogram!("raftwal_fsync_seconds").record(took.as_secs_f64());
}

pub(crate) fn truncation() {
    metrics::counter!("raftwal_truncations_total").increment(1);
}

pub(crate) fn compaction() {
    metrics::counter!("raftwal_compactions_total").increment(1);
}

pub(crate) fn reset() {
    metrics::counter!("raftwal_resets_total").increment(1);
}

pub(crate) fn roll() {
    metrics::counter!("raftwal_segments_rolled_total").increment(1);
}

pub(crate) fn recovery(took: Duration, scanned: u64, dropped: u64) {
    metrics::histogram!("raftwal_recovery_seconds").record(took.as_secs_f64());
    metrics::counter!("raftwal_recovery_bytes_scanned_total").increment(scanned);
    metrics::counter!("raftwal_recovery_bytes_dropped_total").increment(dropped);
}

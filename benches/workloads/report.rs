//! Output: the machine line, one line per figure
//! (`workload backend metric value`), and per-pair ratios with their median.

use std::path::{Path, PathBuf};

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was measured, with its unit (`entries_per_s`, `p99_us`, ...).
    pub metric: String,
    /// The value.
    pub value: f64,
}

/// A list of figures under construction.
#[derive(Debug, Default)]
pub struct Figures(pub Vec<Figure>);

impl Figures {
    /// Adds a figure.
    pub fn add(&mut self, metric: impl Into<String>, value: f64) -> &mut Self {
        self.0.push(Figure {
            metric: metric.into(),
            value,
        });
        self
    }
}

/// The figures of one backend in one pair.
#[derive(Debug)]
pub struct Run {
    /// 1-based pair number.
    pub pair: usize,
    /// The backend's name.
    pub backend: &'static str,
    /// What it measured.
    pub figures: Vec<Figure>,
}

/// Prints one run's figures.
pub fn print_run(workload: &str, run: &Run) {
    for f in &run.figures {
        println!("{workload} {} {} {}", run.backend, f.metric, fmt(f.value));
    }
}

/// Prints, for every metric the raftwal backend shares with `raw` and with
/// `raft-engine`, the ratio raftwal/other of each pair and their median.
/// The raftwal side is `raftwal` when it ran, else `raftwal-log`. When
/// option variants ran (`raftwal:<variant>`), each of them is a raftwal
/// side, compared with `raw`, `raft-engine` and the first variant.
pub fn print_ratios(workload: &str, runs: &[Run]) {
    let mut variants: Vec<&'static str> = Vec::new();
    for r in runs {
        if r.backend.starts_with("raftwal:") && !variants.contains(&r.backend) {
            variants.push(r.backend);
        }
    }
    if let Some(&baseline) = variants.first() {
        for &ours in &variants {
            for other in ["raw", "raft-engine", baseline] {
                if other != ours {
                    print_ratio(workload, runs, ours, other);
                }
            }
        }
        return;
    }
    let ours = if runs.iter().any(|r| r.backend == "raftwal") {
        "raftwal"
    } else {
        "raftwal-log"
    };
    for other in ["raw", "raft-engine"] {
        print_ratio(workload, runs, ours, other);
    }
}

/// Prints the ratios `ours`/`other` of each pair, and their median, for
/// every metric of `ours`.
fn print_ratio(workload: &str, runs: &[Run], ours: &str, other: &str) {
    let Some(first) = runs.iter().find(|r| r.backend == ours) else {
        return;
    };
    for f in &first.figures {
        let mut ratios = Vec::new();
        let pairs = runs.iter().map(|r| r.pair).max().unwrap_or(0);
        for pair in 1..=pairs {
            let a = value(runs, pair, ours, &f.metric);
            let b = value(runs, pair, other, &f.metric);
            if let (Some(a), Some(b)) = (a, b) {
                if b != 0.0 {
                    ratios.push(a / b);
                }
            }
        }
        if ratios.is_empty() {
            continue;
        }
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "{workload} {ours}/{other} {} {:.3} pairs={}",
            f.metric,
            median(&mut ratios),
            each.join(",")
        );
    }
}

fn value(runs: &[Run], pair: usize, backend: &str, metric: &str) -> Option<f64> {
    runs.iter()
        .find(|r| r.pair == pair && r.backend == backend)?
        .figures
        .iter()
        .find(|f| f.metric == metric)
        .map(|f| f.value)
}

/// The median (the mean of the middle two for an even count).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A value with the precision it deserves.
fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The machine line: cores, CPU, the disk, file system and mount options of
/// the mount holding `dir`, and the kernel.
pub fn machine_line(dir: &Path) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let (device, mount, fs, options) =
        mount_of(dir).unwrap_or_else(|| ("unknown".into(), "?".into(), "?".into(), "?".into()));
    let rotational = device
        .strip_prefix("/dev/")
        .and_then(|d| std::fs::read_to_string(format!("/sys/block/{d}/queue/rotational")).ok())
        .map_or("?".to_string(), |s| s.trim().to_string());
    format!(
        "machine cores={cores} cpu=\"{cpu}\" disk={device} rotational={rotational} fs={fs} \
         mount={mount} options={options} kernel={kernel}"
    )
}

/// `(device, mount point, file system, options)` of the mount holding
/// `dir`: the longest mount point that contains it.
fn mount_of(dir: &Path) -> Option<(String, String, String, String)> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[0], PathBuf::from(f[1]), f[2], f[3]))
        })
        .filter(|(_, mp, _, _)| dir.starts_with(mp))
        .max_by_key(|(_, mp, _, _)| mp.components().count())
        .map(|(dev, mp, fs, opts)| {
            (
                dev.to_string(),
                mp.display().to_string(),
                fs.to_string(),
                opts.to_string(),
            )
        })
}

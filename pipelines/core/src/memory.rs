//! How much more memory this process can take before it swaps, is killed or fails to allocate:
//! the kernel's `MemAvailable`, capped by the memory limit of the process's cgroup and of each
//! cgroup above it (a container's limit; cgroup v2's `memory.max`, or v1's
//! `memory.limit_in_bytes`) and by the address-space limit (`ulimit -v`) less the process's
//! resident size. Linux only; elsewhere, or where `/proc` cannot be read, [`available`] is `None`
//! and callers do not check.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Registers how to hand back to the OS the memory the process's allocator holds freed (the
/// binary's allocator: mimalloc's `mi_collect`). [`available`] calls it first, so that what an
/// earlier fit freed counts as available to the next. The first registration counts.
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Bytes this process can still allocate, as far as the kernel says; `None` where unknown.
pub fn available() -> Option<u64> {
    if let Some(release) = RELEASE.get() {
        release();
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let host = meminfo_field(&meminfo, "MemAvailable")?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let limits = [
        cgroup_headroom(&cgroups, Path::new("/sys/fs/cgroup")),
        address_space_headroom(&read("/proc/self/limits"), &read("/proc/self/status")),
    ];
    Some(limits.into_iter().flatten().fold(host, u64::min))
}

/// The soft address-space limit (`ulimit -v`, from `/proc/self/limits`) less the process's
/// resident size (`VmRSS` of `/proc/self/status`); `None` where unlimited. Not its virtual
/// size: the allocator keeps address space it has reserved and freed (mimalloc grew it a GiB at
/// a time in a `tune` run and did not give it back), and reuses it, so that a second fit of the same size
/// after a first (`tune`'s folds) would be refused although it fits in the same addresses.
fn address_space_headroom(limits: &str, status: &str) -> Option<u64> {
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max address space"))?
        .split_whitespace()
        .next()?;
    let limit: u64 = soft.parse().ok()?;
    Some(limit.saturating_sub(meminfo_field(status, "VmRSS").unwrap_or(0)))
}

/// A `Key:   123 kB` line of `/proc/meminfo`, in bytes.
fn meminfo_field(meminfo: &str, key: &str) -> Option<u64> {
    let rest = meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// The least headroom (limit minus usage) of the process's memory cgroup and its ancestors, under
/// the cgroup file system mounted at `root`; `None` where no limit is set. Usage leaves out the
/// inactive page cache, which the kernel reclaims before it kills (as `docker stats` counts it).
fn cgroup_headroom(proc_self_cgroup: &str, root: &Path) -> Option<u64> {
    // cgroup v1: "N:memory:/path" (or a list of controllers with memory); v2: "0::/path". A
    // hybrid system lists both, and the memory controller is then v1's.
    let fields = |line: &'_ str| -> Option<(String, String)> {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        Some((
            controllers.to_string(),
            path.trim_start_matches('/').to_string(),
        ))
    };
    let lines: Vec<(String, String)> = proc_self_cgroup.lines().filter_map(fields).collect();
    let (dir, v2) = match lines
        .iter()
        .find(|(c, _)| c.split(',').any(|c| c == "memory"))
    {
        Some((_, path)) => (root.join("memory").join(path), false),
        None => (
            root.join(&lines.iter().find(|(c, _)| c.is_empty())?.1),
            true,
        ),
    };
    let top = if v2 {
        root.to_path_buf()
    } else {
        root.join("memory")
    };
    let (limit_file, usage_file, inactive_key) = if v2 {
        ("memory.max", "memory.current", "inactive_file")
    } else {
        (
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
            "total_inactive_file",
        )
    };
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).ok();
    let mut least: Option<u64> = None;
    let mut at: PathBuf = dir;
    // Inside a container the path may name a cgroup of the host: then the mount's root is the
    // container's own cgroup, and only it is read.
    if !at.exists() {
        at = top.clone();
    }
    loop {
        // "max" (v2) or a huge number (v1) means no limit here.
        let limit = read(&at, limit_file).and_then(|s| s.trim().parse::<u64>().ok());
        if let (Some(limit), Some(usage)) = (
            limit.filter(|&l| l < 1 << 60),
            read(&at, usage_file).and_then(|s| s.trim().parse::<u64>().ok()),
        ) {
            let inactive = read(&at, "memory.stat")
                .and_then(|stat| {
                    stat.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        (k == inactive_key).then(|| v.trim().parse::<u64>().ok())?
                    })
                })
                .unwrap_or(0);
            let headroom = limit.saturating_sub(usage.saturating_sub(inactive));
            least = Some(least.map_or(headroom, |l| l.min(headroom)));
        }
        if at == top || !at.pop() || !at.starts_with(&top) {
            break;
        }
    }
    least
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available_in_bytes() {
        let meminfo =
            "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   10194492 kB\n";
        assert_eq!(
            meminfo_field(meminfo, "MemAvailable"),
            Some(10_194_492 * 1024)
        );
        assert_eq!(meminfo_field(meminfo, "Mem"), None, "a prefix is not a key");
        assert_eq!(meminfo_field("MemAvailable: lots\n", "MemAvailable"), None);
    }

    #[test]
    fn an_address_space_limit_counts_less_the_resident_size() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         4294967296           unlimited            bytes\n";
        let status = "Name:\ttriage\nVmSize:\t 3145728 kB\nVmRSS:\t    1048576 kB\n";
        assert_eq!(address_space_headroom(limits, status), Some(3 << 30));
        let unlimited = limits.replace("4294967296 ", "unlimited  ");
        assert_eq!(address_space_headroom(&unlimited, status), None);
    }

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn the_tightest_cgroup_limit_counts_less_its_inactive_cache() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // v2: the parent allows 8 GiB with 1 GiB used; the process's cgroup 4 GiB with 3 GiB
        // used, of which 512 MiB is inactive page cache.
        let gib = 1u64 << 30;
        write(&r.join("app"), "memory.max", &format!("{}\n", 8 * gib));
        write(&r.join("app"), "memory.current", &format!("{gib}\n"));
        write(
            &r.join("app/worker"),
            "memory.max",
            &format!("{}\n", 4 * gib),
        );
        write(
            &r.join("app/worker"),
            "memory.current",
            &format!("{}\n", 3 * gib),
        );
        write(
            &r.join("app/worker"),
            "memory.stat",
            &format!("anon 1\ninactive_file {}\nactive_file 2\n", gib / 2),
        );
        write(r, "memory.max", "max\n");
        assert_eq!(cgroup_headroom("0::/app/worker\n", r), Some(gib + gib / 2));
        // The parent binds when it is tighter.
        write(&r.join("app"), "memory.current", &format!("{}\n", 7 * gib));
        assert_eq!(cgroup_headroom("0::/app/worker\n", r), Some(gib));
        // No limit anywhere.
        assert_eq!(cgroup_headroom("0::/\n", r), None);
    }

    #[test]
    fn cgroup_v1_reads_the_memory_controller() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let m = r.join("memory");
        // The host's path is not visible inside the container: the mount's root is read.
        write(&m, "memory.limit_in_bytes", "2147483648\n");
        write(&m, "memory.usage_in_bytes", "1073741824\n");
        write(&m, "memory.stat", "cache 5\ntotal_inactive_file 1024\n");
        let cgroup = "4:memory:/process_api/abc\n3:cpuset:/\n0::/\n";
        assert_eq!(cgroup_headroom(cgroup, r), Some(1_073_741_824 + 1024));
        // v1's "no limit" is a huge number.
        write(&m, "memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(cgroup_headroom(cgroup, r), None);
    }

    #[test]
    fn this_machine_reports_something_on_linux() {
        if cfg!(target_os = "linux") {
            let bytes = available().expect("/proc/meminfo has MemAvailable");
            assert!(bytes > 1 << 20, "{bytes}");
        }
    }
}

//! The consumer's `group.instance.id` (static membership, KIP-345) when `[kafka]
//! group_instance_id = "auto"`: stable across restarts of one instance, different for two
//! instances, with nothing to configure in the usual deployments.
//!
//! - `TRIAGE_INSTANCE_ID` set (a StatefulSet pod name, a systemd `%i`, a compose service
//!   replica): `<group>.<TRIAGE_INSTANCE_ID>`.
//! - Otherwise `<group>.<hostname>.<slot>`. A container has a host name of its own that a
//!   restart of the container keeps; two processes on one host differ by the slot: the lowest
//!   `n` for which this process holds the exclusive lock on `<temp>/triage-<group>.<n>.lock`,
//!   held until the process exits. The kernel releases the lock when the process dies, even by
//!   `kill -9`, so a restarted instance takes its slot back while a second instance still holds
//!   the next one.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use triage_core::config::KafkaConfig;
use triage_core::config::kafka::{AUTO_INSTANCE_ID, InstanceId};

/// Slots tried on one host before giving up on static membership.
const MAX_SLOTS: usize = 64;

/// A resolved instance id, with the lock that reserves its slot (kept for the run).
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) id: Option<String>,
    _lock: Option<File>,
}

/// Keeps `[A-Za-z0-9._-]` (Kafka's own rule for ids), replaces the rest with `_`.
fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// The lowest free slot in `dir` for `group`, with its lock.
fn take_slot(dir: &std::path::Path, group: &str) -> Option<(usize, File)> {
    for n in 0..MAX_SLOTS {
        let path: PathBuf = dir.join(format!("triage-{}.{n}.lock", sanitise(group)));
        let Ok(f) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            return None;
        };
        if f.try_lock().is_ok() {
            return Some((n, f));
        }
    }
    None
}

/// Resolves the instance id for a consumer of `group`.
pub(crate) fn resolve(k: &KafkaConfig, group: &str) -> Instance {
    resolve_with(
        k,
        group,
        std::env::var("TRIAGE_INSTANCE_ID").ok().as_deref(),
        &std::env::temp_dir(),
    )
}

/// The producer's `transactional.id` for `delivery = "exactly_once"`, given the consumer's
/// resolved `instance`: `[kafka] transactional_id` when it names one; else the consumer's
/// `group.instance.id`; else (static membership off, or a replay) an id derived as `"auto"`
/// derives one, with its own slot lock. `None` when no slot could be locked.
pub(crate) fn transactional(k: &KafkaConfig, group: &str, instance: Option<&Instance>) -> Instance {
    transactional_with(
        k,
        group,
        instance,
        std::env::var("TRIAGE_INSTANCE_ID").ok().as_deref(),
        &std::env::temp_dir(),
    )
}

fn transactional_with(
    k: &KafkaConfig,
    group: &str,
    instance: Option<&Instance>,
    env_id: Option<&str>,
    lock_dir: &std::path::Path,
) -> Instance {
    if let Some(id) = k.fixed_transactional_id() {
        return Instance {
            id: Some(id.to_string()),
            _lock: None,
        };
    }
    if let Some(id) = instance.and_then(|i| i.id.clone()) {
        return Instance {
            id: Some(id),
            _lock: None,
        };
    }
    let auto = KafkaConfig {
        group_instance_id: AUTO_INSTANCE_ID.into(),
        ..KafkaConfig::default()
    };
    resolve_with(&auto, group, env_id, lock_dir)
}

fn resolve_with(
    k: &KafkaConfig,
    group: &str,
    env_id: Option<&str>,
    lock_dir: &std::path::Path,
) -> Instance {
    match k.instance_id() {
        InstanceId::Dynamic => Instance {
            id: None,
            _lock: None,
        },
        InstanceId::Fixed(id) => Instance {
            id: Some(id),
            _lock: None,
        },
        InstanceId::Auto => {
            if let Some(e) = env_id.map(str::trim).filter(|e| !e.is_empty()) {
                return Instance {
                    id: Some(format!("{}.{}", sanitise(group), sanitise(e))),
                    _lock: None,
                };
            }
            match take_slot(lock_dir, group) {
                Some((n, lock)) => Instance {
                    id: Some(format!("{}.{}.{n}", sanitise(group), sanitise(&hostname()))),
                    _lock: Some(lock),
                },
                None => {
                    tracing::warn!(dir = %lock_dir.display(), "no instance slot could be locked: dynamic group membership (set [kafka] group_instance_id or TRIAGE_INSTANCE_ID)");
                    Instance {
                        id: None,
                        _lock: None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_ids_differ_per_live_instance_and_come_back_after_exit() {
        let dir = tempfile::tempdir().unwrap();
        let k = KafkaConfig::default();
        let a = resolve_with(&k, "g", None, dir.path());
        let b = resolve_with(&k, "g", None, dir.path());
        let (ia, ib) = (a.id.clone().unwrap(), b.id.clone().unwrap());
        assert!(ia.starts_with("g.") && ia.ends_with(".0"), "{ia}");
        assert!(ib.ends_with(".1"), "{ib}");
        assert_ne!(ia, ib, "two instances on one host must not share an id");
        // The first one exits (its lock is released, as a kill -9 does): a restart gets its id.
        drop(a);
        let again = resolve_with(&k, "g", None, dir.path());
        assert_eq!(again.id.as_deref(), Some(ia.as_str()));
        // Another group has slots of its own.
        let other = resolve_with(&k, "h", None, dir.path());
        assert!(other.id.unwrap().ends_with(".0"));
        drop(b);
    }

    #[test]
    fn the_transactional_id_follows_the_instance_and_is_derived_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let k = KafkaConfig::default();
        // Static membership on: the same id as the consumer's.
        let member = resolve_with(&k, "g", None, dir.path());
        let t = transactional_with(&k, "g", Some(&member), None, dir.path());
        assert_eq!(t.id, member.id);
        // Off (or a replay): derived as "auto" would, with a slot of its own.
        let off = KafkaConfig {
            group_instance_id: "none".into(),
            ..Default::default()
        };
        let dynamic = resolve_with(&off, "g", None, dir.path());
        assert_eq!(dynamic.id, None);
        let t1 = transactional_with(&off, "g", Some(&dynamic), None, dir.path());
        let t2 = transactional_with(&off, "g", None, None, dir.path());
        let (i1, i2) = (t1.id.clone().unwrap(), t2.id.clone().unwrap());
        assert!(i1.ends_with(".1") && i2.ends_with(".2"), "{i1} {i2}");
        // Its lock is released on exit, so a restart gets the same id back.
        drop(t1);
        let again = transactional_with(&off, "g", None, None, dir.path());
        assert_eq!(again.id.as_deref(), Some(i1.as_str()));
        assert_eq!(
            transactional_with(&off, "g", None, Some("pod-3"), dir.path())
                .id
                .as_deref(),
            Some("g.pod-3")
        );
        // Named in the config: verbatim.
        let fixed = KafkaConfig {
            transactional_id: "tx-a".into(),
            ..Default::default()
        };
        assert_eq!(
            transactional_with(&fixed, "g", Some(&member), None, dir.path())
                .id
                .as_deref(),
            Some("tx-a")
        );
        drop((member, t2, again));
    }

    #[test]
    fn the_environment_and_the_config_override_the_slot() {
        let dir = tempfile::tempdir().unwrap();
        let k = KafkaConfig::default();
        let e = resolve_with(&k, "g", Some("pod-3"), dir.path());
        assert_eq!(e.id.as_deref(), Some("g.pod-3"));
        let fixed = KafkaConfig {
            group_instance_id: "mine".into(),
            ..Default::default()
        };
        assert_eq!(
            resolve_with(&fixed, "g", Some("pod-3"), dir.path())
                .id
                .as_deref(),
            Some("mine")
        );
        let off = KafkaConfig {
            group_instance_id: "none".into(),
            ..Default::default()
        };
        assert_eq!(resolve_with(&off, "g", Some("pod-3"), dir.path()).id, None);
        assert_eq!(sanitise("a b/c"), "a_b_c");
    }
}

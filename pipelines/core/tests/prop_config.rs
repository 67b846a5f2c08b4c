//! Property tests of the configuration's serde structs (`toml::from_str::<Config>`: the same
//! structs and `deny_unknown_fields` that `Config::load` extracts through figment).
//!
//! The sections and their keys are read from `Config::default()` itself, so these tests follow
//! the configuration as it grows.

use proptest::prelude::*;
use toml::{Table, Value};
use triage_core::config::Config;

/// Struct-like tables of the default configuration, as dotted paths (`["kafka"]`,
/// `["slm", "generate"]`...), each with its keys. Empty tables are maps (`kafka.properties`,
/// `router.thresholds`), which take any key, and are left out.
fn struct_tables() -> Vec<(Vec<String>, Vec<String>)> {
    fn walk(path: Vec<String>, t: &Table, out: &mut Vec<(Vec<String>, Vec<String>)>) {
        if t.is_empty() {
            return;
        }
        out.push((path.clone(), t.keys().cloned().collect()));
        for (k, v) in t {
            if let Value::Table(sub) = v {
                let mut p = path.clone();
                p.push(k.clone());
                walk(p, sub, out);
            }
        }
    }
    let dump = toml::to_string(&Config::default()).expect("default config serialises");
    let root: Table = toml::from_str(&dump).expect("and reads back");
    let mut out = Vec::new();
    walk(Vec::new(), &root, &mut out);
    out
}

/// Every key that occurs anywhere in the default configuration (to build plausible TOML).
fn known_keys() -> Vec<String> {
    let mut keys: Vec<String> = struct_tables()
        .into_iter()
        .flat_map(|(p, k)| p.into_iter().chain(k))
        .collect();
    keys.extend(
        ["path", "max_per_second", "sasl.password", "neutral"]
            .into_iter()
            .map(String::from),
    );
    keys.sort();
    keys.dedup();
    keys
}

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z0-9.:_ -]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("\"127.0.0.1:0\"".to_string()),
        Just("\"[::1]:9898\"".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("[1, 2.5]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"\"\"multi\nline\"\"\"".to_string()),
        ".{0,8}",
    ]
}

/// TOML-ish documents: section headers and `key = value` lines made of the configuration's own
/// names, random names and random values, with some garbage lines.
fn tomlish() -> impl Strategy<Value = String> {
    let keys = known_keys();
    let key = prop_oneof![
        4 => prop::sample::select(keys.clone()),
        1 => "[a-z_.]{1,10}",
        1 => "\"[^\"\\n]{0,6}\"",
    ];
    let header = prop::collection::vec(prop::sample::select(keys), 1..3)
        .prop_map(|p| format!("[{}]", p.join(".")));
    let line = prop_oneof![
        2 => header,
        5 => (key, toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => ".{0,20}",
        1 => Just("[[kafka]]".to_string()),
        1 => Just("# comment".to_string()),
    ];
    prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any TOML-ish document: a `Config` or an error, never a panic; a `Config` that parses
    /// dumps (secrets redacted) to TOML that reads back to the same dump.
    #[test]
    fn tomlish_documents_never_panic(doc in tomlish()) {
        if let Ok(config) = toml::from_str::<Config>(&doc) {
            let _ = config.kafka.validate();
            if let Ok(dump) = config.redacted_toml() {
                let again: Config = toml::from_str(&dump)
                    .map_err(|e| TestCaseError::fail(format!("{e}\n{dump}")))?;
                prop_assert_eq!(again.redacted_toml().unwrap(), dump);
            }
        }
    }

    /// Any string at all: never a panic.
    #[test]
    fn any_string_never_panics(doc in any::<String>()) {
        let _ = toml::from_str::<Config>(&doc);
    }

    /// A key that a section does not have is an error naming it, in every section and
    /// sub-section (the `deny_unknown_fields` promise), whatever its value.
    #[test]
    fn unknown_keys_rejected_everywhere(
        table in any::<prop::sample::Index>(),
        key in "zz[a-z_]{0,10}",
        value in prop_oneof![
            Just("1".to_string()),
            Just("true".to_string()),
            Just("\"x\"".to_string()),
            Just("[]".to_string()),
        ],
    ) {
        let tables = struct_tables();
        let (path, _) = &tables[table.index(tables.len())];
        let doc = if path.is_empty() {
            format!("{key} = {value}\n")
        } else {
            format!("[{}]\n{key} = {value}\n", path.join("."))
        };
        match toml::from_str::<Config>(&doc) {
            Ok(_) => prop_assert!(false, "unknown key accepted:\n{}", doc),
            Err(e) => prop_assert!(e.to_string().contains(&key), "{e}"),
        }
    }
}

/// Every section, sub-section and key of the default configuration is accepted as written (the
/// positive side of the property above), and an unknown top-level section is refused.
#[test]
fn default_dump_reads_back_and_unknown_sections_fail() {
    let tables = struct_tables();
    assert!(tables.len() >= 7, "{tables:?}");
    let dump = toml::to_string(&Config::default()).unwrap();
    assert_eq!(toml::from_str::<Config>(&dump).unwrap(), Config::default());
    let err = toml::from_str::<Config>("[kafak]\nbrokers = \"x:1\"\n").unwrap_err();
    assert!(err.to_string().contains("kafak"), "{err}");
}
